"""What ``classroom serve --workers N`` costs: each worker's CPU at idle and with a lesson.

    python -m loadtests.workers --workers 2 --subscribers 10 --json out.json

A real ``classroom serve --workers N --no-recording`` (its own private redis-server in a
temporary library folder). CPU per process from ``/proc/<pid>/stat`` over ``--window``
seconds: every worker, the supervisor and its redis-server, **idle** (no lesson, after
start-up has settled) and **with a lesson** (the headless teacher, synthetic 640x360 at
30 fps + tone, publishing through the public port, and ``--subscribers`` light receivers
(``loadtests.light_receiver``) through the same port, which the kernel spreads over the
workers). ``--workers 1`` measures the single process the same way (the comparison).
Nothing is pinned: the load generator (this process, the teacher's encoder)
shares the machine, so ``load_avg`` is in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from loadtests.cascade import SOURCE_FPS, Classroom, Teacher, free_port
from loadtests.fanout import process_cpu
from signaling.auth import mint_token

REPO = Path(__file__).resolve().parent.parent
LESSON = "bench-workers"


def get(url: str, secret: str) -> Any:
    token = mint_token(secret, role="admin", lesson="*")
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=3) as resp:
        return json.load(resp)


async def cpu_over(pids: dict[str, int], window: float) -> dict[str, float]:
    """Cores each process used over ``window`` seconds."""
    before = {name: process_cpu(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(window)
    span = time.monotonic() - t0
    return {name: round((process_cpu(pid) - before[name]) / span, 4)
            for name, pid in pids.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="classroom-workers-bench-"))
    port, secret = free_port(), "bench-" + os.urandom(16).hex()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "CLASSROOM_REDIS_URL"}
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling.cli", "serve", "--workers", str(args.workers),
         "--port", str(port), "--secret", secret, "--library", str(work / "library"),
         "--no-demo", "--no-recording", "--log-level", "warning"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    result: dict[str, Any] = {"workers": args.workers, "subscribers": args.subscribers,
                              "window_s": args.window, "load_avg_before": os.getloadavg()}
    teacher = Teacher(LESSON)
    rooms: list[Classroom] = []
    try:
        deadline = time.monotonic() + 60
        nodes: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                nodes = get(base + "/api/nodes", secret)["nodes"]
            except OSError:
                nodes = []
            if len(nodes) == args.workers:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"workers did not come up; see {work / 'serve.log'}")
        pids = {n["id"]: n["pid"] for n in nodes}
        if args.workers > 1:  # --workers 1: the one process, on the embedded store
            redis = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "redis-server"],
                                   capture_output=True, text=True).stdout.split()
            pids |= {"supervisor": proc.pid} | ({"redis-server": int(redis[0])} if redis
                                                else {})
        pids["generator (this process)"] = os.getpid()
        await asyncio.sleep(args.settle)
        result["idle_cpu"] = await cpu_over(pids, args.window)

        server = SimpleNamespace(url=base, secret=secret)
        await teacher.publish(server, start=True)
        for n in range(args.subscribers):
            room = Classroom(server, LESSON, n)
            await room.join(server)
            rooms.append(room)
        per_worker = {n["id"]: get(n["link_url"] + "/api/relay", secret)["subscribers"]
                      for n in nodes}
        origin = get(base + "/api/nodes", secret)["origins"].get(LESSON)
        await asyncio.sleep(args.settle)
        frames0 = [r.frames() for r in rooms]
        t0 = time.monotonic()
        result["lesson_cpu"] = await cpu_over(pids, args.window)
        span = time.monotonic() - t0
        fps = [(r.frames() - f) / span for r, f in zip(rooms, frames0, strict=True)]
        result |= {
            "origin": origin, "subscribers_per_worker": per_worker,
            "delivered_fps_ratio_worst": round(min(fps, default=0) / SOURCE_FPS, 3),
            "delivered_fps_ratio_mean": round(sum(fps) / max(1, len(fps)) / SOURCE_FPS, 3),
            "load_avg_after": os.getloadavg(),
        }
    finally:
        for room in rooms:
            await room.leave()
        await teacher.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
