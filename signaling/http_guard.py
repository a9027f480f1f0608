"""Slow and greedy HTTP clients: header and body read timeouts, connections per address.

* Header timeout: aiohttp closes a connection whose request head is not complete within
  ``keepalive_timeout`` of the connection opening or the previous response (partial
  bytes do not extend it), so :func:`handler_args` sets it to ``Config.http_header_timeout``
  (``Application(handler_args=...)`` reaches every runner, ``run_app`` included).
* Body timeout: :func:`body_timeout_middleware` reads a request's body within
  ``Config.http_body_timeout`` (else 400 ``bad_message``), before any
  handler waits on it.
* Connections per address: :class:`GuardedRunner` wraps each accepted connection; over
  ``Config.max_connections_per_address`` open ones from one IP, the next is answered 429
  and closed at once. Behind a reverse proxy every connection has the proxy's address:
  the networks given with ``--trusted-proxy`` are exempt (the proxy limits per client;
  loopback is not exempt by default, so a same-host nginx is named with
  ``--trusted-proxy 127.0.0.1/32``). :func:`run_guarded` is how ``classroom serve`` runs
  the site through it (``web.run_app`` cannot wrap connections).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from aiohttp import web

from .config import Config
from .errors import ClassroomError, ErrorCode
from .forwarded import in_networks, parse_networks

logger = logging.getLogger(__name__)


def handler_args(config: Config) -> dict[str, Any]:
    """Request-handler options that bound how long a request head may take."""
    return {"keepalive_timeout": config.http_header_timeout}


def body_timeout_middleware(timeout: float) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.can_read_body:
            try:
                await asyncio.wait_for(request.read(), timeout)
            except TimeoutError:
                raise ClassroomError(ErrorCode.BAD_MESSAGE,
                                     f"request body not received within {timeout:g} s") from None
        return await handler(request)

    return middleware


class ConnectionGuard:
    """Counts open connections per peer address."""

    def __init__(self, limit: int, exempt: Iterable[str] = ()) -> None:
        self.limit = limit
        self.exempt = parse_networks(exempt)
        self.open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        if (self.limit and self.open[address] >= self.limit
                and not in_networks(address, self.exempt)):
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


_REFUSAL = json.dumps({"error": {"code": ErrorCode.RATE_LIMITED.value,
                                 "message": "too many connections from your address"}})
REFUSAL = (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(_REFUSAL)}\r\nConnection: close\r\n\r\n{_REFUSAL}").encode()


class _GuardedProtocol(asyncio.Protocol):
    """Forwards to aiohttp's RequestHandler unless the address is over its limit."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._address: str | None = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        if not self._guard.admit(address):
            transport.write(REFUSAL)
            transport.close()
            return
        self._address = address
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        self._guard.release(self._address)
        self._address = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._address is not None else None

    def pause_writing(self) -> None:
        if self._address is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._address is not None:
            self._inner.resume_writing()


class GuardedRunner(web.AppRunner):
    """An AppRunner whose sites (TCPSite...) get connections through a ConnectionGuard."""

    def __init__(self, app: web.Application, max_per_address: int,
                 exempt: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = ConnectionGuard(max_per_address, exempt)

    @property
    def server(self) -> Any:
        inner = super().server
        if inner is None:
            return None
        guard = self.guard

        def factory() -> _GuardedProtocol:
            return _GuardedProtocol(inner(), guard)

        return factory


def run_guarded(app: web.Application, *, host: str, port: int,
                ssl_context: ssl.SSLContext | None, max_per_address: int,
                exempt: Iterable[str] = (), shutdown_timeout: float = 5.0,
                reuse_port: bool = False, extra_sockets: Iterable[socket.socket] = (),
                on_started: Callable[[], None] | None = None) -> None:
    """``web.run_app`` for ``classroom serve``, with a :class:`GuardedRunner`.

    Same life as run_app: SIGINT/SIGTERM end it gracefully (the app's on_shutdown and
    on_cleanup run, open requests get ``shutdown_timeout``). A worker of ``--workers N``
    binds the shared port with ``reuse_port``, serves the same app on its own listening
    sockets (``extra_sockets``, plain HTTP) and calls ``on_started`` once it listens."""

    async def serve() -> None:
        runner = GuardedRunner(app, max_per_address, exempt, handle_signals=True,
                               access_log=None, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context,
                              reuse_port=reuse_port or None).start()
            for sock in extra_sockets:
                await web.SockSite(runner, sock).start()
            if on_started is not None:
                on_started()
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    loop = asyncio.new_event_loop()
    main = loop.create_task(serve())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in rest:
            task.cancel()
        if rest:
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
