"""One lesson over an origin and edges: what a subscriber costs across nodes, beside one node.

    python -m loadtests.cascade --nodes 2 --subscribers 60 --json out.json

Real ``classroom serve`` processes on a private ``redis-server`` (free port, nothing on
disk). The relay processes are pinned to CPU 0 and this load generator to the others
(``os.sched_setaffinity``; said in the JSON), so the generator's own cost is not the
relay's. The teacher is the headless client (synthetic 640x360 camera at 30 fps + tone);
the classrooms are light receivers (``loadtests.light_receiver.LightPeer``: counted at the
socket, RTCP still sent), negotiated through signaling like any page.

In one run:
1. **single node**: every subscriber on the origin; CPU of the relay at 0 and N.
2. **cascade**: origin + ``--nodes - 1`` edges, the subscribers split evenly over all
   nodes; CPU of every relay process at 0 and N; ``edge_fixed_cpu``: an edge pulling one
   tier and audio for one subscriber (an upper bound of an edge's fixed cost); hop latency
   from each edge's ``GET /api/cascade`` (origin fan-out -> edge hand-off).
3. **edge failover**: an edge is killed (SIGKILL); its classrooms reconnect to the origin;
   seconds until every one of them counts frames again.
4. **origin failover**: the edge is started again, then the origin is killed; the teacher
   publishes to the edge and the classrooms that were on the origin reconnect there;
   seconds from the teacher's media returning until every classroom counts frames again.

Fields (other tools read them): ``cpu_per_subscriber``, ``single_node_cpu_per_subscriber``
(cores per subscriber, slope 0 -> N), ``hop_p95_ms``, ``edge_fixed_cpu``,
``delivered_fps_ratio`` (worst subscriber's fps over the source's 30 fps, cascade step),
``edge_failover_seconds``, ``origin_failover_seconds``, plus ``ratio`` (cascade over single
node), ``load_avg`` before and after, ``affinity``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from loadtests.fanout import process_cpu
from loadtests.light_receiver import LightPeer
from signaling.auth import mint_token

SOURCE_FPS = 30.0
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


class NodeProcess:
    """`classroom serve` on a fixed port (restartable), pinned to the relay CPUs."""

    def __init__(self, name: str, redis_url: str, secret: str, work: Path,
                 cpus: set[int] | None) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secret
        self.cpus = cpus
        self.library = work / name
        self.log = work / f"{name}.log"
        self.args = [sys.executable, "-m", "signaling.cli", "serve", "--host", "127.0.0.1",
                     "--port", str(self.port), "--secret", secret, "--library",
                     str(self.library), "--no-demo", "--redis-url", redis_url,
                     "--workers", "1"]  # one node a process: the bench pins and kills it
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, CLASSROOM_RECORDING="0", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        if self.cpus:
            os.sched_setaffinity(self.proc.pid, self.cpus)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log}")

    def cpu(self) -> float:
        assert self.proc is not None
        return process_cpu(self.proc.pid)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def api(self, path: str) -> Any:
        token = mint_token(self.secret, role="admin", lesson="*")
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req, timeout=3) as resp:
            return json.load(resp)


class Classroom:
    """A light receiver negotiated through signaling (one classroom's TV)."""

    def __init__(self, node: NodeProcess, lesson: str, n: int) -> None:
        self.lesson = lesson
        self.n = n
        self.client: ClassroomClient | None = None
        self.peer: LightPeer | None = None
        self.node = node

    async def join(self, node: NodeProcess) -> None:
        await self.leave()
        self.node = node
        token = mint_token(node.secret, role="classroom", lesson=self.lesson,
                           name=f"c{self.n}", school=f"s{self.n % 7}")
        self.client = ClassroomClient(node.url, token)
        await self.client.connect()
        self.peer = LightPeer(self.client._new_pc(), ("video", "audio"))  # noqa: SLF001
        self.client.pcs["subscribe"] = self.peer.pc
        await self.client._negotiate(self.peer.pc, "subscribe")  # noqa: SLF001
        await self.peer.connected(timeout=30)

    def frames(self) -> int:
        return self.peer.counts[0].frames if self.peer is not None else 0

    async def leave(self) -> None:
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.close(), 5)
            except (TimeoutError, Exception):  # noqa: BLE001 - its node may be dead
                pass
        self.client = None
        self.peer = None


class Teacher:
    def __init__(self, lesson: str) -> None:
        self.lesson = lesson
        self.client: ClassroomClient | None = None

    async def publish(self, node: NodeProcess, start: bool) -> None:
        token = mint_token(node.secret, role="teacher", lesson=self.lesson, name="T")
        self.client = ClassroomClient(node.url, token)
        await self.client.connect()
        pc = await self.client.publish(SyntheticVideoTrack(640, 360, SOURCE_FPS),
                                       SyntheticAudioTrack())
        if start:
            await self.client.start_lesson()
        await self.client.wait_for(lambda: pc.connectionState == "connected", 20)

    async def close(self) -> None:
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.close(), 5)
            except (TimeoutError, Exception):  # noqa: BLE001
                pass


async def join_all(rooms: list[Classroom], nodes: list[NodeProcess]) -> None:
    for i in range(0, len(rooms), 10):
        await asyncio.gather(*(r.join(nodes[(i + k) % len(nodes)])
                               for k, r in enumerate(rooms[i:i + 10])))


async def measure(nodes: list[NodeProcess], rooms: list[Classroom], window: float
                  ) -> tuple[float, list[float], float]:
    """Cores used by each relay process over ``window`` s, and the worst room's fps."""
    cpu0 = [n.cpu() for n in nodes]
    frames0 = [r.frames() for r in rooms]
    t0 = time.monotonic()
    await asyncio.sleep(window)
    span = time.monotonic() - t0
    per_node = [(n.cpu() - c) / span for n, c in zip(nodes, cpu0, strict=True)]
    worst = min(((r.frames() - f) / span for r, f in zip(rooms, frames0, strict=True)),
                default=SOURCE_FPS)
    return sum(per_node), per_node, worst


async def until_all_receive(rooms: list[Classroom], timeout: float) -> float:
    start = time.monotonic()
    base = [r.frames() for r in rooms]
    while time.monotonic() - start < timeout:
        if all(r.frames() > b + 5 for r, b in zip(rooms, base, strict=True)):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise RuntimeError(f"classrooms without media {timeout} s after the failover")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    relay_cpus = {cpus[0]} if len(cpus) > 1 else None
    if relay_cpus:
        os.sched_setaffinity(0, set(cpus[1:]))
    work = Path(tempfile.mkdtemp(prefix="classroom-cascade-bench-"))
    redis = Redis()
    secret = "bench-" + os.urandom(24).hex()
    result: dict[str, Any] = {"nodes": args.nodes, "subscribers": args.subscribers,
                              "window_seconds": args.window, "load_avg_before":
                              os.getloadavg(), "affinity": {
                                  "relays": sorted(relay_cpus) if relay_cpus else "shared",
                                  "generator": cpus[1:] if relay_cpus else "shared"}}
    nodes = [NodeProcess(f"node{i}", redis.url, secret, work, relay_cpus)
             for i in range(args.nodes)]
    try:
        for node in nodes:
            node.start()
        origin, edges = nodes[0], nodes[1:]
        # 1. one node
        teacher = Teacher("single")
        await teacher.publish(origin, start=True)
        await asyncio.sleep(args.warmup)
        base, _, _ = await measure([origin], [], args.window)
        rooms = [Classroom(origin, "single", i) for i in range(args.subscribers)]
        await join_all(rooms, [origin])
        await asyncio.sleep(args.warmup)
        loaded, _, worst_single = await measure([origin], rooms, args.window)
        result["single_node"] = {"cpu_0": round(base, 4), "cpu_n": round(loaded, 4),
                                 "worst_fps": round(worst_single, 2)}
        result["single_node_cpu_per_subscriber"] = round((loaded - base) / args.subscribers, 5)
        for room in rooms:
            await room.leave()
        await teacher.close()
        # 2. the cascade
        teacher = Teacher("cascade")
        await teacher.publish(origin, start=True)
        await asyncio.sleep(args.warmup)
        base, base_nodes, _ = await measure(nodes, [], args.window)
        probe = Classroom(edges[0], "cascade", 9999)
        await probe.join(edges[0])
        await asyncio.sleep(args.warmup)
        _, one, _ = await measure(nodes, [probe], args.window)
        result["edge_fixed_cpu"] = round(one[1], 4)
        result["edge_idle_cpu"] = round(base_nodes[1], 4)
        await probe.leave()
        rooms = [Classroom(origin, "cascade", i) for i in range(args.subscribers)]
        await join_all(rooms, nodes)
        await asyncio.sleep(args.warmup)
        loaded, loaded_nodes, worst = await measure(nodes, rooms, args.window)
        result["cascade"] = {"cpu_0": round(base, 4), "cpu_n": round(loaded, 4),
                             "per_node_n": [round(c, 4) for c in loaded_nodes],
                             "worst_fps": round(worst, 2)}
        result["cpu_per_subscriber"] = round((loaded - base) / args.subscribers, 5)
        result["ratio"] = (round(result["cpu_per_subscriber"]
                                 / result["single_node_cpu_per_subscriber"], 3)
                           if result["single_node_cpu_per_subscriber"] > 0 else None)
        result["delivered_fps_ratio"] = round(min(1.0, worst / SOURCE_FPS), 3)
        hops = [edge.api("/api/cascade")["pulls"].get("cascade", {}).get("hop_ms", {})
                for edge in edges]
        result["hop_ms"] = hops
        p95s = [h["p95"] for h in hops if h.get("p95") is not None]
        result["hop_p95_ms"] = max(p95s) if p95s else None
        # 3. an edge dies: its classrooms go to the origin
        victim = edges[0]
        moved = [r for r in rooms if r.node is victim]
        victim.kill()
        killed = time.monotonic()
        await asyncio.gather(*(r.join(origin) for r in moved))
        await until_all_receive(moved, 20)
        result["edge_failover_seconds"] = round(time.monotonic() - killed, 2)
        # 4. the origin dies: the teacher and its classrooms go to the (restarted) edge
        victim.start()
        await teacher.close()
        origin.kill()
        on_origin = [r for r in rooms if r.node is origin]
        await teacher.publish(victim, start=False)
        returned = time.monotonic()
        await asyncio.gather(*(r.join(victim) for r in on_origin))
        await until_all_receive(rooms if len(nodes) == 2 else on_origin, 20)
        result["origin_failover_seconds"] = round(time.monotonic() - returned, 2)
        for room in rooms:
            await room.leave()
        await teacher.close()
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
    result["load_avg_after"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=60)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.nodes < 2:
        parser.error("--nodes must be at least 2 (an origin and an edge)")
    result = asyncio.run(run(args))
    keys = ("cpu_per_subscriber", "single_node_cpu_per_subscriber", "ratio", "hop_p95_ms",
            "edge_fixed_cpu", "delivered_fps_ratio", "edge_failover_seconds",
            "origin_failover_seconds")
    for key in keys:
        print(f"{key:34s} {result.get(key)}")
    print(f"load average before {result['load_avg_before']} after {result['load_avg_after']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
