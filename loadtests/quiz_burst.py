"""Quiz burst: N student phones answer one pushed question within a window.

    python -m loadtests.quiz_burst --students 2000 --backend memory --json out.json
    python -m loadtests.quiz_burst --students 2000 --backend redis --json out.json

The server runs in a process of its own (``python -m signaling.cli serve``); with
``--backend redis`` a private ``redis-server`` on a free port backs it. This process holds
one teacher socket (which receives the live tally, as in a real lesson) and N student
WebSockets (aiohttp, no WebRTC). The teacher pushes one question; every student answers at
a random moment of the window (default 10 s) after it arrives, and 5 % resend their answer
with the same ``answer_id`` (a phone that lost the ack). Acknowledgement latency is
measured from send to ``quiz-ack``. The report (``/api/.../quiz/report``) is then checked:
every acknowledged answer is in it exactly once (``lost``, ``duplicates``).

Writes ``answers_sent``, ``answers_acked``, ``answers_in_report``, ``lost``, ``duplicates``,
``p50_ack_ms``, ``p99_ack_ms`` (and more) to ``--json``. Targets: p99 <= 250 ms, zero lost,
exact counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import aiohttp

from signaling.auth import mint_token

LESSON = "burst"
TARGET_P99_MS = 250.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Redis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="quiz-burst-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


class Server:
    """``classroom serve`` in a child process on a free loopback port (also used by qoe)."""

    def __init__(self, redis_url: str | None, *, name: str = "quiz-burst",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.secret = f"{name}-" + uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-server-", suffix=".log",
                                               delete=False)
        cmd = [sys.executable, "-m", "signaling.cli", "serve", "--port", str(self.port),
               "--secret", self.secret, "--no-demo", "--log-level", "warning",
               "--max-connections-per-address", "0",  # every client is on loopback here
               "--library", tempfile.mkdtemp(prefix=f"{name}-lib-"), *extra_args]
        if redis_url:
            cmd += ["--redis-url", redis_url, "--workers", "1"]  # one node, as with SQLite
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited; see {self.log.name}")
            try:
                async with http.get(self.base + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("server not ready in 30 s")

    def token(self, role: str, **kw: Any) -> str:
        return mint_token(self.secret, role=role, lesson=LESSON, **kw)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Student:
    def __init__(self, index: int) -> None:
        self.index = index
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.question = asyncio.get_running_loop().create_future()
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[dict[str, Any]] = []
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, http: aiohttp.ClientSession, server: Server) -> None:
        self.ws = await http.ws_connect(server.base.replace("http", "ws") + "/ws",
                                        heartbeat=None, max_msg_size=0)
        token = server.token("student", sub=f"stu-{self.index}", name=f"学生{self.index}",
                             school=f"学校{self.index % 10}")
        await self.ws.send_str(json.dumps({"type": "hello", "token": token}))
        while True:
            msg = json.loads((await self.ws.receive(timeout=30)).data)
            if msg.get("type") == "welcome":
                break
            if msg.get("type") == "error":
                raise RuntimeError(f"hello refused: {msg}")
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            kind = msg.get("type")
            if kind == "quiz-question" and not self.question.done():
                self.question.set_result(msg)
            elif kind == "quiz-ack":
                fut = self.acks.get(msg["answer_id"] + ("#2" if msg["duplicate"] else ""))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif kind == "error":
                self.errors.append(msg)

    async def answer(self, window: float, resend: bool, latencies: list[float],
                     result: dict[str, Any]) -> None:
        assert self.ws is not None
        event = await asyncio.wait_for(self.question, 60)
        rnd = event["round"]
        await asyncio.sleep(random.uniform(0, window))
        answer_id = uuid.uuid4().hex
        msg = {"type": "quiz-answer", "answer_id": answer_id, "round_id": rnd["round_id"],
               "question_id": rnd["questions"][0]["id"], "value": random.randrange(4)}
        loop = asyncio.get_running_loop()
        self.acks[answer_id] = loop.create_future()
        sent = time.perf_counter()
        await self.ws.send_str(json.dumps(msg))
        result["sent"] += 1
        try:
            await asyncio.wait_for(self.acks[answer_id], 30)
        except TimeoutError:
            result["ack_timeouts"] += 1
            return
        latencies.append((time.perf_counter() - sent) * 1000)
        result["acked"].add(answer_id)
        if resend:
            self.acks[answer_id + "#2"] = loop.create_future()
            await self.ws.send_str(json.dumps(msg))
            result["resends"] += 1
            try:
                ack = await asyncio.wait_for(self.acks[answer_id + "#2"], 30)
                if ack["duplicate"]:
                    result["resends_acked_duplicate"] += 1
            except TimeoutError:
                result["ack_timeouts"] += 1

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile(args.students * 2 + 512)
    redis = Redis() if args.backend == "redis" else None
    server = Server(redis.url if redis else None)
    connector = aiohttp.TCPConnector(limit=0)
    http = aiohttp.ClientSession(connector=connector)
    students: list[Student] = []
    try:
        await server.wait_healthy(http)
        teacher_token = server.token("teacher", name="王老师")
        qset = {"title": "burst", "questions": [{
            "id": "q1", "type": "single", "text": "2 + 2 = ?",
            "options": ["3", "4", "5", "22"], "answer": 1}]}
        async with http.put(f"{server.base}/api/lessons/{LESSON}/quiz/set", json=qset,
                            headers={"Authorization": f"Bearer {teacher_token}"}) as r:
            assert r.status == 200, await r.text()
        teacher = await http.ws_connect(server.base.replace("http", "ws") + "/ws",
                                        max_msg_size=0)
        await teacher.send_str(json.dumps({"type": "hello", "token": teacher_token}))
        while True:  # a roster may overtake the welcome
            first = json.loads((await teacher.receive(timeout=10)).data)
            if first.get("type") == "welcome":
                break
            if first.get("type") == "error":
                raise SystemExit(f"teacher hello refused: {first}")
        tallies: list[dict[str, Any]] = []

        async def teacher_reader() -> None:
            async for frame in teacher:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    msg = json.loads(frame.data)
                    if msg.get("type") == "quiz-tally":
                        tallies.append(msg)

        reader = asyncio.ensure_future(teacher_reader())

        t0 = time.perf_counter()
        students = [Student(i) for i in range(args.students)]
        sem = asyncio.Semaphore(200)

        async def connect(s: Student) -> None:
            async with sem:
                await s.connect(http, server)

        await asyncio.gather(*(connect(s) for s in students))
        connect_s = time.perf_counter() - t0
        print(f"{args.students} students connected in {connect_s:.1f}s", file=sys.stderr)

        latencies: list[float] = []
        result: dict[str, Any] = {"sent": 0, "acked": set(), "resends": 0,
                                  "resends_acked_duplicate": 0, "ack_timeouts": 0}
        resenders = set(random.sample(range(args.students),
                                      int(args.students * args.resend_fraction)))
        tasks = [asyncio.ensure_future(s.answer(args.window, s.index in resenders, latencies,
                                                result)) for s in students]
        t_push = time.perf_counter()
        await teacher.send_str(json.dumps({"type": "push-question", "question_id": "q1"}))
        await asyncio.gather(*tasks)
        burst_s = time.perf_counter() - t_push
        print(f"answers done in {burst_s:.1f}s", file=sys.stderr)

        async with http.get(f"{server.base}/api/lessons/{LESSON}/quiz/report",
                            headers={"Authorization": f"Bearer {teacher_token}"}) as r:
            report = await r.json()
        ids = [a["answer_id"] for a in report["answers"]]
        per_student: dict[str, int] = {}
        for a in report["answers"]:
            per_student[a["id"]] = per_student.get(a["id"], 0) + 1
        acked: set[str] = result["acked"]
        lost = len(acked - set(ids)) + result["ack_timeouts"]
        duplicates = (len(ids) - len(set(ids))) + sum(n - 1 for n in per_student.values()
                                                       if n > 1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not tallies or tallies[-1]["answers"]
                                               != len(acked)):
            await asyncio.sleep(0.1)
        errors: dict[str, int] = {}
        for s in students:
            for e in s.errors:
                errors[e.get("code", "?")] = errors.get(e.get("code", "?"), 0) + 1
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        out = {
            "backend": args.backend,
            "students": args.students,
            "window_s": args.window,
            "answers_sent": result["sent"],
            "answers_acked": len(acked),
            "answers_in_report": report["totals"]["answers"],
            "lost": lost,
            "duplicates": duplicates,
            "resends": result["resends"],
            "resends_acked_duplicate": result["resends_acked_duplicate"],
            "p50_ack_ms": round(p50, 2) if p50 is not None else None,
            "p99_ack_ms": round(p99, 2) if p99 is not None else None,
            "max_ack_ms": round(max(latencies), 2) if latencies else None,
            "connect_s": round(connect_s, 2),
            "burst_s": round(burst_s, 2),
            "teacher_tally_answers": tallies[-1]["answers"] if tallies else None,
            "errors": errors,
        }
        out["targets_met"] = bool(
            out["p99_ack_ms"] is not None and out["p99_ack_ms"] <= TARGET_P99_MS
            and lost == 0 and duplicates == 0
            and out["answers_sent"] == out["answers_acked"] == out["answers_in_report"]
            == args.students)
        reader.cancel()
        await teacher.close()
        return out
    finally:
        await asyncio.gather(*(s.close() for s in students), return_exceptions=True)
        await http.close()
        server.stop()
        if redis is not None:
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--backend", choices=("memory", "redis"), default="memory")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds over which the answers are spread")
    parser.add_argument("--resend-fraction", type=float, default=0.05)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    out = asyncio.run(run(args))
    text = json.dumps(out, indent=2, ensure_ascii=False)
    print(text)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0 if out["targets_met"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
