"""``classroom serve --workers 2``: two processes on one public port, nodes of one cascade.

Real processes: the supervisor starts its own redis-server on a unix socket in the library
folder and two workers that bind the same port (SO_REUSEPORT) and each a private address
(their ``link_url``). A teacher publishes through the public port; classrooms connect
through it until one lands on the worker that is not the lesson's origin (an edge); every
classroom decodes. A worker killed with SIGKILL is started again by the supervisor and a
classroom that lands on it gets media; SIGTERM to the supervisor ends the workers and the
redis-server and removes the socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from signaling.auth import mint_token
from signaling.workers import resolve, split_ports
from tests.helpers import free_port

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
LESSON = "workers"


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return True


class Supervised:
    """``classroom serve --workers 2`` in a child process, its output in files."""

    def __init__(self, work: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.secret = "workers-" + os.urandom(12).hex()
        self.library = work / "library"
        self.out, self.err = work / "out.log", work / "err.log"
        env = {k: v for k, v in os.environ.items() if k != "CLASSROOM_REDIS_URL"}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve", "--workers", "2", "--port",
                 str(self.port), "--secret", self.secret, "--library", str(self.library),
                 "--no-demo", *extra],
                cwd=REPO, stdout=out, stderr=err, env=env)

    def token(self, role: str, **claims: Any) -> str:
        return mint_token(self.secret, role=role, lesson=LESSON if role != "admin" else "*",
                          **claims)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.err.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines

    def tail(self) -> str:
        return (self.out.read_text(errors="replace")[-2000:] + "\n---\n"
                + self.err.read_text(errors="replace")[-4000:])


async def api(http: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"},
                        timeout=aiohttp.ClientTimeout(total=3)) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        return await resp.json()


async def until(predicate, timeout: float, what: str, server: Supervised) -> Any:
    """Await ``predicate()`` (async, returns a truthy value) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await predicate()
        except (aiohttp.ClientError, OSError, TimeoutError, AssertionError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s\n{server.tail()}")
        await asyncio.sleep(0.1)


async def test_two_workers_one_port_one_lesson(tmp_path: Path) -> None:
    server = Supervised(tmp_path)
    admin = server.token("admin")
    clients: list[ClassroomClient] = []
    try:
        async with aiohttp.ClientSession() as http:
            async def two_nodes() -> list[dict[str, Any]] | None:
                nodes = (await api(http, server.base + "/api/nodes", admin))["nodes"]
                return nodes if len(nodes) == 2 else None

            nodes = await until(two_nodes, 30, "two workers in /api/nodes", server)
            sock = server.library / "redis" / "redis.sock"
            assert sock.is_socket()
            assert sorted(n["id"].rsplit("-", 1)[1] for n in nodes) == ["w1", "w2"]
            assert {n["http_url"] for n in nodes} == {server.base}  # one public port
            links = {n["id"]: n["link_url"] for n in nodes}
            assert len(set(links.values())) == 2
            assert all(u.startswith("http://127.0.0.1:") for u in links.values())
            for url in links.values():  # each worker scraped at its own address
                async with http.get(url + "/metrics") as resp:
                    assert resp.status == 200 and "classroom_" in await resp.text()
            targets = json.loads((server.library / "prometheus-workers.json").read_text())
            assert sorted(t["targets"][0] for t in targets) == sorted(
                u.split("//")[1] for u in links.values())
            redis_pid = next(e["pid"] for e in server.logs()
                             if e.get("msg") == "private redis-server up")
            assert server.out.read_text().count("workers         2") == 1  # links once

            teacher = ClassroomClient(server.base, server.token("teacher", name="T"))
            clients.append(teacher)
            await teacher.connect()
            await teacher.start_lesson()
            await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())

            async def origin() -> str | None:
                return (await api(http, server.base + "/api/nodes", admin))["origins"].get(
                    LESSON)

            origin_id = await until(origin, 15, "the lesson's origin", server)
            edge_id = next(i for i in links if i != origin_id)

            async def subscribers() -> dict[str, int]:
                return {i: (await api(http, u + "/api/relay", admin))["subscribers"]
                        for i, u in links.items()}

            async def classroom_on(want: str, tries: int = 16) -> ClassroomClient:
                """Classrooms through the public port until one is on worker ``want``."""
                for n in range(tries):
                    before = await subscribers()
                    room = ClassroomClient(server.base, server.token(
                        "classroom", name=f"C{len(clients)}", school=f"s{n}"))
                    clients.append(room)
                    await room.connect()
                    await room.subscribe()

                    async def landed(before: dict[str, int] = before) -> str | None:
                        now = await subscribers()
                        return next((i for i in now if now[i] > before[i]), None)

                    if await until(landed, 10, "the classroom's worker", server) == want:
                        return room
                raise AssertionError(f"no classroom landed on {want} in {tries} tries")

            far = await classroom_on(edge_id)
            for room in clients[1:]:
                await room.wait_for(lambda r=room: r.video_frames >= 10, timeout=20)
            assert far.audio_frames > 0

            async def listed() -> list[list[dict[str, Any]]] | None:
                """The origin's recording, once, on both workers (one library folder)."""
                lists = [(await api(http, u + "/api/recordings", admin))["recordings"]
                         for u in links.values()]
                ids = [[e["id"] for e in entries] for entries in lists]
                return lists if all(len(i) == 1 for i in ids) and ids[0] == ids[1] else None

            lists = await until(listed, 10, "the recording listed by both workers", server)
            assert lists[0][0]["state"] == "recording"
            recording_id = lists[0][0]["id"]

            # SIGKILL the edge worker: the supervisor starts it again (same node id)
            edge_pid = next(n["pid"] for n in nodes if n["id"] == edge_id)
            os.kill(edge_pid, signal.SIGKILL)
            killed_at = time.monotonic()

            async def restarted() -> dict[str, Any] | None:
                nodes = (await api(http, server.base + "/api/nodes", admin))["nodes"]
                return next((n for n in nodes if n["id"] == edge_id
                             and n["pid"] != edge_pid), None)

            record = await until(restarted, 20, "the killed worker back", server)
            back_after = time.monotonic() - killed_at
            links[edge_id] = record["link_url"]
            assert any(e.get("msg") == "worker died" and e.get("signal") == "SIGKILL"
                       for e in server.logs())
            await asyncio.wait_for(far.close(), 5)
            clients.remove(far)
            again = await classroom_on(edge_id)
            await again.wait_for(lambda: again.video_frames >= 10, timeout=20)
            print(f"worker back after {back_after:.1f} s")

            for client in clients:
                await asyncio.wait_for(client.close(), 5)
            clients.clear()
            pids = [n["pid"] for n in (await api(http, server.base + "/api/nodes",
                                                 admin))["nodes"]] + [edge_pid, redis_pid]

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0, server.tail()
        for pid in pids:
            deadline = time.monotonic() + 5
            while not gone(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert gone(pid), f"process {pid} outlived the supervisor"
        assert not sock.exists()
        assert not (server.library / "prometheus-workers.json").exists()
        catalog = json.loads((server.library / "catalog.json").read_text())["recordings"]
        assert list(catalog) == [recording_id]  # stopped with its worker, owned by it
        assert catalog[recording_id]["state"] == "interrupted"
        assert catalog[recording_id]["owner"] == origin_id
    finally:
        for client in clients:
            try:
                await asyncio.wait_for(client.close(), 5)
            except Exception:  # noqa: BLE001 - cleaning up after a failure
                pass
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def test_workers_without_redis_server_say_so(tmp_path: Path) -> None:
    """No redis-server on PATH and no --redis-url: one plain line, exit 2, nothing started."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CLASSROOM_REDIS_URL"}
    env["PATH"] = str(empty)
    proc = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "serve", "--workers", "2", "--port",
         str(free_port()), "--library", str(tmp_path / "library")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--workers 2 needs Redis" in proc.stderr and "redis-server" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "library" / "redis").exists()


def test_auto_and_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: one per core on a shared store, else one on the embedded store with a reason;
    --rtc-ports split into shares, too few refused."""
    monkeypatch.setattr("signaling.workers.cores", lambda: 4)
    assert resolve(None, "redis://r:6379/0", tmp_path) == (4, "")
    count, why = resolve(None, None, tmp_path)
    assert count == 1 and "embedded store" in why and "--workers 4" in why
    assert resolve(3, None, tmp_path) == (3, "")
    monkeypatch.setattr("signaling.workers.cores", lambda: 1)
    assert resolve(None, None, tmp_path) == (1, "")
    assert split_ports((40000, 40009), 3) == [(40000, 40002), (40003, 40005), (40006, 40009)]
    assert split_ports(None, 2) == [None, None]
    with pytest.raises(Exception, match="too few for 3 workers"):
        split_ports((40000, 40004), 3)
