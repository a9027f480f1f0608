"""A fixed UDP port range for the relay's media (``classroom serve --rtc-ports LOW-HIGH``).

Why: a school or data-centre firewall can only be opened for ports known in advance; aioice
binds each host candidate's socket to port 0 (an ephemeral port, anywhere in 32768-60999).

Where: aioice gathers host candidates in ``Connection.get_component_candidates`` with
``loop.create_datagram_endpoint(factory, local_addr=(address, 0))``, one socket per host
address (each IPv4 and global IPv6 address) and component (one: the relay bundles). That
call is wrapped here, once per process (:func:`install`): while a relay peer connection
gathers inside :func:`gathering` (a context variable, so other peer connections in the
process, e.g. a test's clients, are untouched), a port-0 bind becomes a bind to the first
port of the range free on that address, and the socket is handed to asyncio. A socket's
port returns to the range when aioice closes it (the kernel is the bookkeeper: a port still
bound anywhere, by this process or another, is skipped). A range of one port serves one
peer connection (its IPv4 and IPv6 sockets share the number); the next finds no port.

When no port is free on any address, aioice logs the failed bind and gathers no host
candidate; :class:`Gathering` records it and the relay refuses the peer with
``media_failed`` instead of answering with an SDP nobody can reach.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import socket
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from . import webrtc_private


def parse_port_range(text: str) -> tuple[int, int]:
    """``"40000-40099"`` -> ``(40000, 40099)``; a clear ValueError for anything else."""
    low_text, dash, high_text = text.strip().partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"--rtc-ports must be LOW-HIGH (e.g. 40000-40099), got {text!r}") \
            from None
    if not dash or not 1024 <= low <= high <= 65535:
        raise ValueError(f"--rtc-ports must be LOW-HIGH with 1024 <= LOW <= HIGH <= 65535, "
                         f"got {text!r}")
    return low, high


class PortsExhausted(OSError):
    """No port of the range is free on an address (an OSError: aioice skips the address)."""


_pools: weakref.WeakSet[PortPool] = weakref.WeakSet()


class PortPool:
    """The ports of one range, and the relay sockets bound in it."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        self.low = low
        self.high = high
        self._sockets: list[socket.socket] = []
        _pools.add(self)

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def bind(self, host: str) -> socket.socket:
        """A UDP socket bound to ``host`` at the first port of the range free there."""
        info = socket.getaddrinfo(host, self.low, type=socket.SOCK_DGRAM,
                                  flags=socket.AI_NUMERICHOST)[0]
        family, sockaddr = info[0], info[4]
        for port in range(self.low, self.high + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((sockaddr[0], port, *sockaddr[2:]))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._prune()
            self._sockets.append(sock)
            return sock
        raise PortsExhausted(errno.EADDRINUSE, f"no free UDP port in {self} on {host}")

    def in_use(self) -> int:
        """Ports of the range held by an open relay socket (any address)."""
        self._prune()
        return len({s.getsockname()[1] for s in self._sockets})

    def _prune(self) -> None:
        self._sockets = [s for s in self._sockets if s.fileno() != -1]


EXHAUSTED = Counter(
    "classroom_rtc_ports_exhausted_total",
    "Peer connections refused (media_failed) because no port of --rtc-ports was free",
)
IN_USE = Gauge("classroom_rtc_ports_in_use",
               "Ports of the --rtc-ports range held by relay media sockets")
IN_USE.set_function(lambda: sum(pool.in_use() for pool in list(_pools)))


@dataclass
class Gathering:
    """What one peer connection's candidate gathering did with the pool."""

    pool: PortPool
    bound: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Addresses that had no free port."""
    active: bool = True

    @property
    def exhausted(self) -> bool:
        """No host socket at all, for want of a port."""
        return bool(self.refused) and not self.bound


_current: contextvars.ContextVar[Gathering | None] = contextvars.ContextVar(
    "classroom_rtc_gathering", default=None)


@contextlib.contextmanager
def gathering(pool: PortPool | None) -> Iterator[Gathering | None]:
    """Host sockets created by aioice inside this block (and the tasks it starts) are
    bound in ``pool``; None: ephemeral ports, as aioice does."""
    if pool is None:
        yield None
        return
    install()
    state = Gathering(pool)
    token = _current.set(state)
    try:
        yield state
    finally:
        state.active = False  # tasks that outlive the block (ICE checks) keep the context
        _current.reset(token)


_original = webrtc_private.original_create_datagram_endpoint


async def _create_datagram_endpoint(self: Any, protocol_factory: Any, local_addr: Any = None,
                                    remote_addr: Any = None, **kwargs: Any) -> Any:
    """``BaseEventLoop.create_datagram_endpoint``; a port-0 bind inside :func:`gathering`
    takes a port of the range."""
    state = _current.get()
    if (state is None or not state.active or remote_addr is not None or kwargs
            or not isinstance(local_addr, tuple) or len(local_addr) != 2
            or local_addr[1] != 0):
        return await _original(self, protocol_factory, local_addr, remote_addr, **kwargs)
    try:
        sock = state.pool.bind(local_addr[0])
    except PortsExhausted:
        state.refused.append(local_addr[0])
        raise
    try:
        result = await _original(self, protocol_factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    state.bound.append(sock.getsockname()[1])
    return result


def install() -> None:
    """Wrap asyncio's ``create_datagram_endpoint`` (process-wide, idempotent); outside
    :func:`gathering` it only forwards."""
    if not webrtc_private.create_datagram_endpoint_compatible():
        raise RuntimeError("asyncio's create_datagram_endpoint changed: --rtc-ports unusable")
    if webrtc_private.create_datagram_endpoint() is not _create_datagram_endpoint:
        webrtc_private.replace_create_datagram_endpoint(_create_datagram_endpoint)
