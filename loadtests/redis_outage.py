"""Redis outage with a lesson live: killed, restarted empty, frozen, thawed.

    python -m loadtests.redis_outage --json out.json

Starts its own redis-server (no persistence, on a free port) and ``classroom serve
--redis-url`` in a process of its own; this process plays an aiortc teacher (camera +
microphone published, lesson started) and an aiortc classroom receiving and decoding the
media. Then, with the HTTP API polled every ``--poll`` seconds throughout:

1. ``kill``: Redis is killed for ``--down`` seconds and started again, EMPTY, on the
   same port (it keeps nothing on disk: the lesson record and presence are gone);
2. ``freeze``: Redis is SIGSTOPped for ``--down`` seconds (it answers nobody; TCP
   connects still succeed), then SIGCONTed. During the freeze the teacher's socket sends
   ``start-lesson`` (needs the store) and ``ping`` (does not) every 200 ms.

After each phase, once ``/readyz`` is green again, ``--hellos`` classrooms say hello at
once (the burst that found stale pooled connections) and the API keeps being polled for
``--after`` seconds.

Written to ``--json`` (and printed):

* ``api_5xx_during_outage``: 5xx API answers by error code, over the whole run (target:
  no ``internal``); ``api_internal_during_outage``: how many of them were ``internal``
  (or had no JSON error body) -- target 0;
* ``failed_after_ready``: API requests and hellos started after ``/readyz`` was green
  again that failed (any non-2xx, error or timeout), target 0;
* ``media_stall_ms``: the longest gap between two video frames the classroom decoded,
  from the kill to the end of the run, counted only when longer than
  ``STALL_GAP_MS`` (250 ms: 7.5 frame times at 30 fps; the gaps of a healthy run on this
  machine stay below it, see ``baseline_max_frame_gap_ms``), else 0 -- target 0;
  ``max_frame_gap_ms`` is the raw longest gap;
* ``roster_correct_after_s``: the longest, over the two phases, time from Redis answering
  again to the lesson being right: ``GET /api/lessons/{id}`` says ``live``, its roster
  holds the teacher and the classroom (and only open sockets), and the teacher's socket
  has been sent that roster -- target <= 2;
* ``ping_max_ms_during_freeze``: the slowest ``pong`` while Redis was frozen;
* details per phase, the request counts, server tracebacks, ``loadavg``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from classroom_client import ClassroomClient, ProtocolError
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from signaling.auth import mint_token

SECRET = "redis-outage-loadtest-secret-0123456789"
LESSON = "outage-1"
STALL_GAP_MS = 250.0
"""A gap between decoded video frames longer than this is a stall (30 fps: 33 ms)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(role: str, name: str = "", lesson: str = LESSON) -> str:
    return mint_token(SECRET, role=role, lesson=lesson, name=name, ttl=3600)


class Redis:
    """A private redis-server without persistence that the run kills, freezes, restarts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="outage-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


class Server:
    """``classroom serve --redis-url`` in a child process; its log kept for tracebacks."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkdtemp(prefix="outage-server-")) / "server.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        library = tempfile.mkdtemp(prefix="outage-lib-")
        env = {**os.environ, "CLASSROOM_SECRET": SECRET}
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signaling.cli", "serve", "--port", str(self.port),
                "--library", library, "--no-demo", "--log-level", "warning",
                "--redis-url", self.redis_url, "--workers", "1",  # one node: its outage
                env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline and self.proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"server did not start (log: {self.log})")

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Probe:
    """Everything measured while the run goes on."""

    def __init__(self) -> None:
        self.ready_since: float | None = None  # /readyz green again after an outage
        self.outage = False
        self.api: list[dict[str, Any]] = []
        self.after_ready_failures: list[dict[str, Any]] = []
        self.frames: list[float] = []  # when the classroom's decoded frame count moved

    def note_api(self, started: float, path: str, status: int, code: str | None) -> None:
        entry = {"t": started, "path": path, "status": status, "code": code}
        self.api.append(entry)
        if self.ready_since is not None and started >= self.ready_since and not (
                200 <= status < 300):
            self.after_ready_failures.append(entry)


async def poll_api(http: aiohttp.ClientSession, base: str, probe: Probe, period: float,
                   stop: asyncio.Event) -> None:
    """GET the lesson, the lesson list and the relay stats in turn, every ``period``."""
    requests = [(f"/api/lessons/{LESSON}", token("teacher", "T")),
                ("/api/lessons", token("admin", "", "*")),
                (f"/api/lessons/{LESSON}", token("classroom", "poller"))]
    i = 0
    while not stop.is_set():
        path, bearer = requests[i % len(requests)]
        i += 1
        started = time.monotonic()
        status, code = 0, "timeout"
        try:
            async with http.get(base + path, headers={"Authorization": f"Bearer {bearer}"},
                                timeout=aiohttp.ClientTimeout(total=5)) as resp:
                status = resp.status
                code = None
                if status >= 400:
                    try:
                        code = (await resp.json())["error"]["code"]
                    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
                        code = "no_json_error"
        except (aiohttp.ClientError, TimeoutError):
            pass
        probe.note_api(started, path, status, code)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, started + period - time.monotonic()))


async def sample_frames(room: ClassroomClient, probe: Probe, stop: asyncio.Event) -> None:
    """Note when the decoded frame count moves (10 ms resolution)."""
    last = room.video_frames
    while not stop.is_set():
        await asyncio.sleep(0.01)
        if room.video_frames != last:
            last = room.video_frames
            probe.frames.append(time.monotonic())


def max_gap_ms(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    if len(inside) < 2:
        return (end - start) * 1000
    edges = [start, *inside, end] if inside else [start, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False)) * 1000


async def readyz(http: aiohttp.ClientSession, base: str) -> int:
    try:
        async with http.get(base + "/readyz", timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def wait_readyz(http: aiohttp.ClientSession, base: str, want: int,
                      timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await readyz(http, base) == want:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"/readyz did not turn {want}")


async def lesson_view(http: aiohttp.ClientSession, base: str, teacher: ClassroomClient
                      ) -> dict[str, Any]:
    """The lesson as the API and as the teacher's socket show it now."""
    view: dict[str, Any] = {"socket_state": teacher.lesson_state,
                            "socket_roster": sorted(p["name"] for p in teacher.roster)}
    try:
        async with http.get(base + f"/api/lessons/{LESSON}",
                            headers={"Authorization": "Bearer " + token("teacher", "T")},
                            timeout=aiohttp.ClientTimeout(total=2)) as resp:
            view["status"] = resp.status
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        view["status"] = type(exc).__name__
        return view
    if view["status"] == 200:
        view["state"] = body["state"]
        view["roster"] = sorted(p["name"] for p in body["roster"])
    return view


def lesson_right(view: dict[str, Any], open_names: set[str]) -> bool:
    return (view.get("state") == "live" and view["socket_state"] == "live"
            and {"T", "A"} <= set(view["roster"]) <= open_names
            and {"T", "A"} <= set(view["socket_roster"]) <= open_names)


async def time_until_right(http: aiohttp.ClientSession, base: str, teacher: ClassroomClient,
                           since: float, open_names: set[str], timeout: float = 15
                           ) -> tuple[float, dict[str, Any]]:
    """Seconds from ``since`` until the lesson is right (inf: not within ``timeout``), and
    the last view."""
    deadline = time.monotonic() + timeout
    while True:
        view = await lesson_view(http, base, teacher)
        if lesson_right(view, open_names):
            return round(time.monotonic() - since, 3), view
        if time.monotonic() > deadline:
            return float("inf"), view
        await asyncio.sleep(0.05)


async def hello_burst(base: str, n: int, tag: str, probe: Probe) -> tuple[int, list[str]]:
    """``n`` concurrent classroom hellos; returns (welcomed, failure codes)."""
    async def one(i: int) -> ClassroomClient | str:
        client = ClassroomClient(base, token("classroom", f"{tag}-{i}"))
        try:
            await client.connect(timeout=10)
            return client
        except ProtocolError as err:
            await client.close()
            return err.code
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            await client.close()
            return type(exc).__name__
    started = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    failures = [r for r in results if isinstance(r, str)]
    for code in failures:
        probe.after_ready_failures.append({"t": started, "path": "ws hello", "code": code})
    await asyncio.gather(*(c.close() for c in results if isinstance(c, ClassroomClient)))
    return n - len(failures), failures


async def freeze_traffic(teacher: ClassroomClient, stop: asyncio.Event) -> dict[str, Any]:
    """While frozen: ``start-lesson`` (store-bound) then ``ping`` every 200 ms; the pong's
    delay is what a store-bound message makes the socket's other messages wait."""
    delays: list[float] = []
    store_errors: dict[str, int] = {}
    first = len(teacher.messages)
    i = 0
    while not stop.is_set():
        mark = len(teacher.messages)
        await teacher.send({"type": "start-lesson"})
        sent = time.monotonic()
        await teacher.send({"type": "ping", "ts": f"freeze-{i}"})
        ts = f"freeze-{i}"
        i += 1
        try:
            await teacher.next_message("pong", since=mark, timeout=10,
                                       where=lambda m, ts=ts: m.get("ts") == ts)
            delays.append(time.monotonic() - sent)
        except TimeoutError:
            delays.append(10.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    for m in teacher.messages[first:]:
        if m.get("type") == "error" and m.get("ref") == "start-lesson":
            store_errors[m["code"]] = store_errors.get(m["code"], 0) + 1
    return {"pings": len(delays), "ping_max_ms": round(max(delays, default=0) * 1000, 1),
            "start_lesson_sent": i, "start_lesson_errors": store_errors}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis = Redis()
    redis.start()
    server = Server(redis.url)
    teacher = room = None
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    probe = Probe()
    try:
        await server.start()
        base = server.url
        teacher = ClassroomClient(base, token("teacher", "T"))
        await teacher.connect()
        await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())
        await teacher.start_lesson()
        room = ClassroomClient(base, token("classroom", "A"))
        await room.connect()
        await room.subscribe()
        await room.wait_for(lambda: room.video_frames >= 30, timeout=30)
        open_names = {"T", "A", "poller"}
        async with aiohttp.ClientSession() as http:
            tasks.append(asyncio.ensure_future(sample_frames(room, probe, stop)))
            tasks.append(asyncio.ensure_future(poll_api(http, base, probe, args.poll, stop)))
            baseline_start = time.monotonic()
            await asyncio.sleep(args.down)
            baseline_gap = max_gap_ms(probe.frames, baseline_start, time.monotonic())
            phases: dict[str, Any] = {}

            async def recovery(tag: str, back: float) -> dict:
                """From Redis back: /readyz green, a burst of hellos, the roster right."""
                ready = await wait_readyz(http, base, 200)
                probe.ready_since = ready
                hellos = asyncio.ensure_future(hello_burst(base, args.hellos, tag, probe))
                right, view = await time_until_right(
                    http, base, teacher, back,
                    open_names | {f"{tag}-{i}" for i in range(args.hellos)})
                welcomed, failures = await hellos
                return {"readyz_green_after_s": round(ready - back, 3),
                        "roster_correct_after_s": right, "lesson_view": view,
                        "hellos_welcomed": welcomed, "hello_failures": failures}

            # 1. killed, restarted empty on the same port
            outage_start = time.monotonic()
            probe.ready_since = None
            redis.kill()
            await wait_readyz(http, base, 503)
            await asyncio.sleep(args.down)
            redis.start()
            back = time.monotonic()
            phases["kill"] = {"down_s": round(back - outage_start, 2),
                              **await recovery("kill", back)}
            await asyncio.sleep(args.after)

            # 2. frozen (SIGSTOP), thawed
            probe.ready_since = None
            freeze_stop = asyncio.Event()
            redis.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            traffic = asyncio.ensure_future(freeze_traffic(teacher, freeze_stop))
            await asyncio.sleep(args.down)
            freeze_stop.set()
            during = await traffic
            redis.signal(signal.SIGCONT)
            back2 = time.monotonic()
            phases["freeze"] = {"frozen_s": round(back2 - frozen_at, 2),
                                **await recovery("freeze", back2), **during}
            await asyncio.sleep(args.after)
            end = time.monotonic()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        gap = max_gap_ms(probe.frames, outage_start, end)
        outage_api = [e for e in probe.api if e["t"] >= outage_start]
        fivexx: dict[str, int] = {}
        for e in outage_api:
            if e["status"] >= 500:
                key = e["code"] or "none"
                fivexx[key] = fivexx.get(key, 0) + 1
        internal = sum(n for code, n in fivexx.items()
                       if code in ("internal", "no_json_error", "none"))
        return {
            "api_5xx_during_outage": fivexx,
            "api_internal_during_outage": internal,
            "failed_after_ready": len(probe.after_ready_failures),
            "failed_after_ready_detail": probe.after_ready_failures[:20],
            "media_stall_ms": round(gap, 1) if gap > STALL_GAP_MS else 0,
            "max_frame_gap_ms": round(gap, 1),
            "baseline_max_frame_gap_ms": round(baseline_gap, 1),
            "stall_gap_threshold_ms": STALL_GAP_MS,
            "roster_correct_after_s": max(phases["kill"]["roster_correct_after_s"],
                                          phases["freeze"]["roster_correct_after_s"]),
            "ping_max_ms_during_freeze": phases["freeze"]["ping_max_ms"],
            "phases": phases,
            "api_requests": len(outage_api),
            "video_frames": room.video_frames,
            "server_tracebacks": server.tracebacks(),
            "down_s": args.down,
            "hellos": args.hellos,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        stop.set()
        for client in (room, teacher):
            if client is not None:
                await client.close()
        await server.stop()
        redis.kill()


def print_report(result: dict[str, Any]) -> None:
    print(f"api 5xx during outage   : {result['api_5xx_during_outage']} "
          f"(internal: {result['api_internal_during_outage']}) of {result['api_requests']}")
    print(f"failed after ready      : {result['failed_after_ready']}")
    print(f"media stall             : {result['media_stall_ms']} ms "
          f"(max frame gap {result['max_frame_gap_ms']} ms, baseline "
          f"{result['baseline_max_frame_gap_ms']} ms, stall > {STALL_GAP_MS:.0f} ms)")
    print(f"roster correct after    : {result['roster_correct_after_s']} s "
          f"(kill {result['phases']['kill']['roster_correct_after_s']} s, freeze "
          f"{result['phases']['freeze']['roster_correct_after_s']} s)")
    print(f"ping max during freeze  : {result['ping_max_ms_during_freeze']} ms")
    print(f"server tracebacks       : {result['server_tracebacks']}")
    print(f"load average            : {result['loadavg']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=4.0,
                        help="seconds Redis stays killed, and then frozen")
    parser.add_argument("--after", type=float, default=3.0,
                        help="seconds of polling after each recovery")
    parser.add_argument("--hellos", type=int, default=30,
                        help="classrooms saying hello at once after each recovery")
    parser.add_argument("--poll", type=float, default=0.1, help="API poll period, seconds")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print_report(result)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
    ok = (result["api_internal_during_outage"] == 0 and result["failed_after_ready"] == 0
          and result["media_stall_ms"] == 0 and result["roster_correct_after_s"] <= 2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
