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

from aiortc import RTCPeerConnection

from . import webrtc_private

READ_BATCH = 32
"""Datagrams read per readiness event at most (bounded, so one flooded socket cannot
starve the loop's other callbacks)."""

logger = logging.getLogger(__name__)
_batched_read_ready = webrtc_private.batched_datagram_reader(READ_BATCH)
"""asyncio's datagram reader, looping until the socket is empty (webrtc_private.py)."""


def install_batched_reads() -> bool:
    """Make datagram transports created from now on drain up to READ_BATCH datagrams
    per event (process-wide; idempotent). False when asyncio's internals are not the
    ones this was written against (then nothing is changed)."""
    if webrtc_private.datagram_read_ready() is _batched_read_ready:
        return True
    if not webrtc_private.datagram_reader_compatible():
        logger.warning("asyncio datagram transport changed: batched reads not installed")
        return False
    webrtc_private.replace_datagram_read_ready(_batched_read_ready)
    return True


def uninstall_batched_reads() -> None:
    """Back to asyncio's one datagram per event (tests compare the two)."""
    webrtc_private.replace_datagram_read_ready(None)


def peer_sockets(pc: RTCPeerConnection) -> list[socket.socket]:
    """The UDP sockets of a peer's ICE transports (after gathering)."""
    sockets: list[socket.socket] = []
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        for protocol in webrtc_private.ice_protocols(webrtc_private.ice_connection(transport)):
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

