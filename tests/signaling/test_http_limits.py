"""Slow clients (issue 18): a request head or body that does not arrive in time closes
the connection / gets 400, and one address may hold only so many connections; a normal
request works meanwhile."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from signaling.app import build_app
from signaling.config import Config
from signaling.http_guard import GuardedRunner
from tests.helpers import TEST_SECRET, free_port, start_server

HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_half_sent_request_heads_are_closed_after_the_header_timeout():
    server = await start_server(http_header_timeout=1.0)
    port = int(server.base_url.rsplit(":", 1)[1])
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
    try:
        started = time.monotonic()
        for _, writer in conns:
            writer.write(HALF_REQUEST)
        async with aiohttp.ClientSession() as session:  # a normal request still works
            async with session.get(server.base_url + "/healthz") as resp:
                assert resp.status == 200
        closed = await asyncio.gather(*(_closed_within(r, 5.0) for r, _ in conns))
        assert all(closed), f"{closed.count(False)} half-sent requests still open"
        assert time.monotonic() - started < 5.0
    finally:
        for _, writer in conns:
            writer.close()
        await server.close()


async def test_a_body_that_does_not_arrive_gets_400_after_the_body_timeout():
    server = await start_server(http_body_timeout=1.0)
    port = int(server.base_url.rsplit(":", 1)[1])
    token = server.token("admin", "math-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST /api/lessons HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":"
                     .encode())
        started = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 400"), head
        assert 0.8 < time.monotonic() - started < 5.0
        assert b"bad_message" in await asyncio.wait_for(reader.read(4096), 5.0)
    finally:
        writer.close()
        await server.close()


async def test_connections_per_address_are_limited():
    port = free_port()
    cfg = Config(host="127.0.0.1", port=port, secret=TEST_SECRET, max_connections_per_address=5,
                 library=Path(tempfile.mkdtemp(prefix="classroom-lib-")))
    runner = GuardedRunner(build_app(cfg), cfg.max_connections_per_address,
                           handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # the 6th
        refusal = await asyncio.wait_for(reader.read(), 5.0)
        assert refusal.startswith(b"HTTP/1.1 429") and b"rate_limited" in refusal
        writer.close()
        _, first = conns.pop(0)
        first.close()
        await first.wait_closed()
        deadline = time.monotonic() + 5.0
        while True:  # the freed slot is taken again once the server saw the close
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        break
            assert time.monotonic() < deadline, "slot was not released"
            await asyncio.sleep(0.05)
    finally:
        for _, writer in conns:
            writer.close()
        await runner.cleanup()


async def test_classroom_serve_limits_connections_per_address_and_stops_on_sigterm(tmp_path):
    """The real `classroom serve` runs its site through the guard (not only a test runner):
    the 4th idle connection from one address gets 429; a trusted proxy is exempt; SIGTERM
    still stops it cleanly."""
    import signal
    import subprocess
    import sys

    async def start(*extra: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling.cli", "serve", "--port", str(port), "--secret",
             TEST_SECRET, "--library", str(tmp_path / "lib"), "--no-demo",
             "--max-connections-per-address", "3", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve not listening within 30 s"
                await asyncio.sleep(0.1)
        return proc, port

    async def fourth_refused(port: int) -> bool:
        held = []
        for _ in range(3):
            held.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.read(200), 10)
        for _, w in [*held, (reader, writer)]:
            w.close()
        return head.startswith(b"HTTP/1.1 429")

    proc, port = await start()
    try:
        await asyncio.sleep(0.3)  # the probe connection above has been released
        assert await fourth_refused(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    proc, port = await start("--trusted-proxy", "127.0.0.1/32")
    try:
        await asyncio.sleep(0.3)
        assert not await fourth_refused(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
