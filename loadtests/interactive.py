"""Two-way lesson benchmark: a teacher, N classroom uplinks, one classroom on stage.

    python -m loadtests.interactive --classrooms 30 --seconds 20 --json out.json

The product runs as it ships (``classroom serve``, memory store) in a process of its own;
this process plays the teacher (camera + audio published, the grid connection with
``--grid-slots`` visible tiles) and N classrooms, each with an uplink (camera + mic) and a
subscription (teacher camera, share, stage video; teacher and stage audio). Uplinks send
the packets of one shared encoder (:mod:`loadtests.encoded_source`) so the load generator
does not pay N encoders; receivers count encoded frames without decoding.

Measured, on the server process only: ``cpu_cores`` (CPU-seconds per second over the
steady window, one classroom on stage), ``rss_mb`` (at the end of the window),
``p95_stage_forward_ms`` (the relay's own ingress -> egress histogram for the stage
classroom's media, over the window), and ``stage_switch_ms``: from the teacher's
``call-on-stage`` to the moment every other classroom has received both the stage video
and the stage audio (median over ``--switches`` calls, each from an empty stage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from classroom_client import playout
from classroom_client.client import ClassroomClient
from classroom_client.media import install_counting_decoder, receive_counts
from loadtests.encoded_source import SharedEncodedSource
from loadtests.fanout import (
    delta_buckets,
    enlarge_receive_buffers,
    parse_histogram,
    process_cpu,
    quantile,
)
from signaling.auth import mint_token

SECRET = "interactive-benchmark-secret-0123456789"
LESSON = "bench-two-way"
TARGETS = {"stage_switch_ms": 1000.0, "p95_stage_forward_ms": 20.0}
REACH = 0.9
"""A stage switch is timed until this share of the other classrooms has its media."""
FORWARD_METRIC = "classroom_relay_forward_latency_seconds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """``classroom serve`` in a child process, on a free port and a temporary library."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self, extra: list[str]) -> None:
        port = free_port()
        library = tempfile.mkdtemp(prefix="interactive-lib-")
        env = {**os.environ, "CLASSROOM_SECRET": SECRET}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "signaling.cli", "serve", "--port", str(port),
            "--library", library, "--no-demo", "--log-level", "warning", *extra,
            env=env, stdout=asyncio.subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or self.proc.returncode is not None:
                    raise RuntimeError("server did not start")
                await asyncio.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as resp:
            return await resp.text()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def new_pc() -> RTCPeerConnection:
    """Max-bundle: an aiortc peer's second audio m-line (the stage) needs it (docs/two-way.md)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[],
                                              bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def receiving_pc(kinds: tuple[str, ...]) -> RTCPeerConnection:
    """A recvonly peer whose receivers give up on a lost packet as a browser does
    (classroom_client.playout): aiortc's own buffer would stall behind one hole."""
    pc = new_pc()
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        playout.install(transceiver.receiver, kind)
    return pc


async def negotiate(client: ClassroomClient, pc: RTCPeerConnection, purpose: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.request(
        {"type": "offer", "purpose": purpose, "sdp": pc.localDescription.sdp}, "answer",
        timeout=30)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
    client.pcs[purpose] = pc


class Classroom:
    """One remote classroom: uplink (shared encoder) and subscription (counted, not decoded)."""

    def __init__(self, base: str, index: int, *, low_bandwidth: bool = False) -> None:
        token = mint_token(SECRET, role="classroom", lesson=LESSON, school=f"school-{index}",
                           name=f"Class {index}", ttl=3600)
        self.client = ClassroomClient(base, token)
        self.index = index
        self.low_bandwidth = low_bandwidth
        self.received: dict[str, list[Any]] = {"video": [], "audio": []}

    @property
    def peer_id(self) -> str:
        return self.client.peer_id

    async def join(self, source: SharedEncodedSource) -> None:
        await self.client.connect(timeout=30)
        uplink = new_pc()
        for kind in ("video", "audio"):
            transceiver = uplink.addTransceiver(source.track(kind), direction="sendonly")
            source.attach_sender(transceiver.sender)
        await negotiate(self.client, uplink, "uplink")
        sub = receiving_pc(("video", "video", "video", "audio", "audio"))
        await negotiate(self.client, sub, "subscribe")
        enlarge_receive_buffers(sub)
        if self.low_bandwidth:  # the classroom's own button: at most the low tier
            await self.client.send({"type": "low-bandwidth", "on": True})

    def _tracks(self, kind: str) -> list[Any]:
        pc = self.client.pcs.get("subscribe")
        if pc is None:
            return []
        return [t.receiver.track for t in pc.getTransceivers() if t.kind == kind]

    def stage_counts(self) -> tuple[int, int]:
        """Encoded stage video frames and stage audio packets received so far."""
        videos, audios = self._tracks("video"), self._tracks("audio")
        video = receive_counts(videos[2]).frames if len(videos) > 2 else 0
        audio = receive_counts(audios[1]).frames if len(audios) > 1 else 0
        return video, audio

    @property
    def tier(self) -> str:
        """The last ``tier`` event for this classroom (``high`` before any)."""
        for message in reversed(self.client.messages):
            if message.get("type") == "tier" and message.get("peer_id") == self.peer_id:
                return message["tier"]
        return "high"

    def teacher_frames(self) -> int:
        videos = self._tracks("video")
        return receive_counts(videos[0]).frames if videos else 0


async def wait_for(condition, timeout: float, what: str, interval: float = 0.01) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic()


async def switch_stage(teacher: ClassroomClient, target: Classroom, others: list[Classroom],
                       timeout: float) -> dict:
    """Call ``target`` on stage from an empty stage. Per other classroom: ms until it has
    received both the stage video and the stage audio. ``ms`` is the time until
    ``REACH`` of them have (None when fewer did within ``timeout``)."""
    before = {c.index: c.stage_counts() for c in others}
    started = time.monotonic()
    await teacher.send({"type": "call-on-stage", "peer_id": target.peer_id})
    pending = {c.index: c for c in others}
    arrived: list[float] = []
    deadline = started + timeout
    while pending and time.monotonic() < deadline:
        for index, c in list(pending.items()):
            video, audio = c.stage_counts()
            if video > before[index][0] and audio > before[index][1]:
                del pending[index]
                arrived.append(1000 * (time.monotonic() - started))
        await asyncio.sleep(0.005)
    need = max(1, int(REACH * len(others) + 0.999))
    got = [(c.index, c.stage_counts()) for c in pending.values()]
    return {
        "ms": round(arrived[need - 1], 1) if len(arrived) >= need else None,
        "all_ms": round(arrived[-1], 1) if not pending else None,
        "reached": len(arrived),
        "of": len(others),
        "missing_video": sum(v <= before[i][0] for i, (v, _) in got),
        "missing_audio": sum(a <= before[i][1] for i, (_, a) in got),
        "missing_tiers": sorted({c.tier for c in pending.values()}),
    }


async def leave_stage(teacher: ClassroomClient, others: list[Classroom]) -> None:
    await teacher.send({"type": "leave-stage"})
    await asyncio.sleep(0.3)
    # the stage m-lines go silent: wait until no classroom receives stage video any more
    last = {c.index: c.stage_counts()[0] for c in others}
    for _ in range(40):
        await asyncio.sleep(0.1)
        now = {c.index: c.stage_counts()[0] for c in others}
        if now == last:
            return
        last = now
    print(f"  note: stage video still arriving 4 s after leave-stage: {last}", file=sys.stderr)


async def run(args: argparse.Namespace) -> dict:
    install_counting_decoder()
    server = Server()
    await server.start(args.serve_arg or [])
    source = SharedEncodedSource(640, 360, 30, bitrate=args.uplink_bitrate)
    teacher_source = SharedEncodedSource(args.teacher_width, args.teacher_height, 30,
                                         bitrate=args.teacher_bitrate)
    source.start()
    teacher_source.start()
    classrooms: list[Classroom] = []
    teacher = ClassroomClient(server.url, mint_token(SECRET, role="teacher", lesson=LESSON,
                                                     school="city", name="Teacher",
                                                     ttl=3600))
    try:
        await teacher.connect(timeout=30)
        await teacher.start_lesson()
        publish = new_pc()
        for kind in ("video", "audio"):
            transceiver = publish.addTransceiver(teacher_source.track(kind),
                                                 direction="sendonly")
            teacher_source.attach_sender(transceiver.sender)
        await negotiate(teacher, publish, "publish")
        grid = receiving_pc(("video",) * args.grid_slots + ("audio",))
        await negotiate(teacher, grid, "grid")
        enlarge_receive_buffers(grid)

        for start in range(0, args.classrooms, 5):
            batch = [Classroom(server.url, i, low_bandwidth=args.low_bandwidth)
                     for i in range(start, min(args.classrooms, start + 5))]
            await asyncio.gather(*(c.join(source) for c in batch))
            classrooms.extend(batch)
        await wait_for(lambda: all(c.teacher_frames() > 0 for c in classrooms), 60,
                       "teacher video at every classroom", interval=0.2)
        visible = [c.peer_id for c in classrooms[:args.grid_slots]]
        await teacher.request({"type": "grid-view", "peers": visible}, "grid", timeout=15)
        grid_videos = [t.receiver.track for t in grid.getTransceivers() if t.kind == "video"]
        await wait_for(lambda: all(receive_counts(t).frames > 0
                                   for t in grid_videos[:len(visible)]),
                       30, "every visible grid tile", interval=0.2)

        switches: list[dict] = []
        for n in range(args.switches):
            target = classrooms[n % len(classrooms)]
            others = [c for c in classrooms if c is not target]
            switches.append(await switch_stage(teacher, target, others, timeout=10))
            await leave_stage(teacher, others)
        stage = classrooms[0]
        others = classrooms[1:]
        await switch_stage(teacher, stage, others, timeout=10)
        timed = [s["ms"] for s in switches if s["ms"] is not None]
        states: dict[str, int] = {}
        for c in classrooms:
            for purpose, pc in c.client.pcs.items():
                key = f"{purpose}:{pc.connectionState}"
                states[key] = states.get(key, 0) + 1

        await asyncio.sleep(args.warmup)
        before_text = await server.metrics()
        cpu0, driver0, t0 = process_cpu(server.pid), process_cpu(os.getpid()), time.monotonic()
        stage0 = {c.index: c.stage_counts()[0] for c in others}
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        cpu = (process_cpu(server.pid) - cpu0) / elapsed
        driver_cpu = (process_cpu(os.getpid()) - driver0) / elapsed
        rss = rss_mb(server.pid)
        after_text = await server.metrics()
        stage_fps = [(c.stage_counts()[0] - stage0[c.index]) / elapsed for c in others]
        forward = {}
        after, before = (parse_histogram(after_text, FORWARD_METRIC),
                         parse_histogram(before_text, FORWARD_METRIC))
        stage_buckets: dict[float, float] = {}
        for kind, buckets in after.items():
            delta = delta_buckets(buckets, before.get(kind, {}))
            p95 = quantile(delta, 0.95)
            forward[kind] = round(1000 * p95, 2) if p95 is not None else None
            if "stage" in kind:
                for bound, count in delta.items():
                    stage_buckets[bound] = stage_buckets.get(bound, 0.0) + count
        stage_p95 = quantile(stage_buckets, 0.95)
        return {
            "classrooms": args.classrooms,
            "seconds": round(elapsed, 1),
            "grid_slots": args.grid_slots,
            "cpu_cores": round(cpu, 3),
            "rss_mb": round(rss, 1),
            "p95_stage_forward_ms": round(1000 * stage_p95, 2) if stage_p95 else None,
            "stage_switch_ms": round(statistics.median(timed), 1) if timed else None,
            "stage_switch_ms_max": round(max(timed), 1) if timed else None,
            "stage_switches": switches,
            "stage_switch_reach": REACH,
            "forward_p95_ms_by_kind": forward,
            "stage_video_fps_min": round(min(stage_fps), 1),
            "stage_video_fps_median": round(statistics.median(stage_fps), 1),
            "driver_cpu_cores": round(driver_cpu, 3),
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "teacher_size": f"{args.teacher_width}x{args.teacher_height}",
            "low_bandwidth": args.low_bandwidth,
            "connection_states": states,
            "targets": TARGETS,
        }
    finally:
        for c in classrooms:
            await c.client.close()
        await teacher.close()
        await source.close()
        await teacher_source.close()
        await server.stop()


def print_report(result: dict) -> None:
    print(f"two-way lesson, {result['classrooms']} classrooms, one on stage, "
          f"{result['grid_slots']} grid tiles visible, window {result['seconds']} s")
    print(f"  server cpu        {result['cpu_cores']:.3f} cores   rss {result['rss_mb']} MB")
    print(f"  stage forward p95 {result['p95_stage_forward_ms']} ms   "
          f"(by kind: {result['forward_p95_ms_by_kind']})")
    print(f"  stage switch      median {result['stage_switch_ms']} ms, max "
          f"{result['stage_switch_ms_max']} ms (until {REACH:.0%} of the other classrooms "
          f"had video and audio)")
    for s in result["stage_switches"]:
        print(f"    {s}")
    print(f"  stage video fps at classrooms: min {result['stage_video_fps_min']}, "
          f"median {result['stage_video_fps_median']}")
    print(f"  classroom connections after the switches: {result['connection_states']}")
    print(f"  load generator cpu {result['driver_cpu_cores']} cores; "
          f"loadavg {' '.join(result['loadavg'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classrooms", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--switches", type=int, default=5)
    parser.add_argument("--grid-slots", type=int, default=9)
    parser.add_argument("--uplink-bitrate", type=int, default=300_000)
    parser.add_argument("--teacher-width", type=int, default=1280)
    parser.add_argument("--teacher-height", type=int, default=720)
    parser.add_argument("--teacher-bitrate", type=int, default=1_500_000)
    parser.add_argument("--low-bandwidth", action="store_true",
                        help="every classroom presses low-bandwidth (low tier: about an "
                             "eighth of the packets for this process to receive)")
    parser.add_argument("--serve-arg", action="append",
                        help="extra argument for `classroom serve` (repeatable)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    if args.classrooms < 2:
        parser.error("--classrooms must be at least 2")
    result = asyncio.run(run(args))
    print_report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
