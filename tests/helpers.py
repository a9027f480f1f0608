"""Shared test helpers: free ports, a real redis-server, a real server on a socket."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server from the binary, on a free port, that a test may stop."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not installed (scripts/test installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="classroom-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)


@dataclass
class RunningServer:
    base_url: str
    app: web.Application
    runner: web.AppRunner
    secret: str

    @property
    def node(self) -> Any:
        from signaling.app import NODE_KEY

        return self.app[NODE_KEY]

    def token(self, role: str, lesson: str = "math-1", **kw: Any) -> str:
        from signaling.auth import mint_token

        return mint_token(self.secret, role=role, lesson=lesson, **kw)

    async def close(self) -> None:
        await self.runner.cleanup()


TEST_SECRET = "test-secret-0123456789abcdef-0123456789"


async def start_server(secret: str = TEST_SECRET, *, bind: str = "127.0.0.1",
                       **config: Any) -> RunningServer:
    from signaling.app import build_app
    from signaling.config import Config

    port = free_port()
    cfg = Config(host=bind, port=port, secret=secret,
                 library=Path(tempfile.mkdtemp(prefix="classroom-lib-")), **config)
    app = build_app(cfg)
    # A test's open sockets are its own to close; aiohttp's default waits up to 60 s for
    # handlers still running at cleanup (a test asserting a timeout leaves one behind).
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, bind, port).start()
    return RunningServer(f"http://127.0.0.1:{port}", app, runner, secret)


async def eventually(condition, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Wait for ``condition()`` (sync or async) to be truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)
