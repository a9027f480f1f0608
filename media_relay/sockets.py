"""UDP sockets that keep up with a busy event loop.

asyncio's datagram transport reads **one** datagram each time the selector reports a
socket readable. A peer's socket therefore drains at most one packet per loop iteration:
with iterations of 5-10 ms (thirty classrooms' uplinks and fan-out on one loop) a teacher's
720p stream (~150-250 packets a second, bursts of 40 on a keyframe) falls behind, the
kernel buffer (208 KB by default) overflows, and what is lost includes STUN consent
checks: after six of them (30 s) the teacher's browser gives up on the connection. Seen
in ``loadtests/interactive.py`` at 30 classrooms: thousands of ``RcvbufErrors`` in
``/proc/net/snmp`` and the teacher's publish connection closed.

Two remedies, both cheap:

* :func:`install_batched_reads` makes every datagram transport read up to
  :data:`READ_BATCH` datagrams per readiness event (what a C server does with
  ``recvmmsg``), which also saves a selector round trip per packet;
* :func:`enlarge_receive_buffers` asks for larger kernel receive buffers on a peer's
  sockets (the kernel caps the request at ``net.core.rmem_max``).
"""

from __future__ import annotations

import logging
import socket
from asyncio import selector_events
from typing import Any

from aiortc import RTCPeerConnection

READ_BATCH = 32
"""Datagrams read per readiness event at most (bounded, so one flooded socket cannot
starve the loop's other callbacks)."""

logger = logging.getLogger(__name__)
_EXPECTED_NAMES = ("_conn_lost", "_sock", "recvfrom", "max_size", "_protocol",
                   "datagram_received", "error_received", "_fatal_error")
"""What asyncio's own reader uses (3.11-3.13): the batched one relies on the same."""
_original_read_ready = selector_events._SelectorDatagramTransport._read_ready


def _batched_read_ready(self: Any) -> None:
    """``_SelectorDatagramTransport._read_ready``, looping until the socket is empty."""
    for _ in range(READ_BATCH):
        if self._conn_lost:
            return
        try:
            data, addr = self._sock.recvfrom(self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - asyncio's own handling, kept
            self._fatal_error(exc, "Fatal read error on datagram transport")
            return
        self._protocol.datagram_received(data, addr)


def install_batched_reads() -> bool:
    """Make datagram transports created from now on drain up to READ_BATCH datagrams
    per event (process-wide; idempotent). False when asyncio's internals are not the
    ones this was written against (then nothing is changed)."""
    cls = selector_events._SelectorDatagramTransport
    if cls._read_ready is _batched_read_ready:
        return True
    if not set(_EXPECTED_NAMES) <= set(_original_read_ready.__code__.co_names):
        logger.warning("asyncio datagram transport changed: batched reads not installed")
        return False
    cls._read_ready = _batched_read_ready  # type: ignore[method-assign]
    return True


def uninstall_batched_reads() -> None:
    """Back to asyncio's one datagram per event (tests compare the two)."""
    selector_events._SelectorDatagramTransport._read_ready = (  # type: ignore[method-assign]
        _original_read_ready)


def peer_sockets(pc: RTCPeerConnection) -> list[socket.socket]:
    """The UDP sockets of a peer's ICE transports (after gathering)."""
    sockets: list[socket.socket] = []
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        ice = getattr(getattr(transport, "transport", None), "_connection", None)
        for protocol in getattr(ice, "_protocols", []):
            udp = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if udp is not None and all(udp is not s for s in sockets):
                sockets.append(udp)
    return sockets


def enlarge_receive_buffers(pc: RTCPeerConnection, size: int) -> int:
    """Ask for ``size``-byte receive buffers on the peer's sockets; returns how many were
    set (the kernel grants up to ``net.core.rmem_max``, doubled for bookkeeping)."""
    count = 0
    for udp in peer_sockets(pc):
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            count += 1
        except OSError:
            pass
    return count

