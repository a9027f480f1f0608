"""Two-way lesson benchmark: a teacher, N classroom uplinks, one classroom on stage.

    python -m loadtests.interactive --classrooms 30 --seconds 20 --json out.json

The product runs as it ships (``classroom serve``, memory store) in a process of its own;
this process plays the teacher (camera + audio published, the grid connection with
``--grid-slots`` visible tiles) and N classrooms, each with an uplink (camera + mic) and a
subscription (teacher camera, share, stage video; teacher and stage audio).

The generator must cost much less than the server on the same 2 cores, so:
* sources are encoded once, before anything is measured, and replayed
  (:class:`loadtests.encoded_source.LoopedEncodedSource`, a keyframe on request): the
  teacher's camera and the two sizes the classroom page sends (class.js: a 320x180 15 fps
  thumbnail off stage, 640x360 20 fps on stage; a classroom switches on the ``stage``
  event, as the page does);
* receivers count frames from RTP headers without decoding, and after a stream's first
  packet straight from the socket callback (:mod:`loadtests.light_receiver`), still
  sending the receiver reports the server's rate controller reads.

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

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from classroom_client.client import ClassroomClient
from loadtests import light_receiver
from loadtests.encoded_source import EncodedTrack, LoopedEncodedSource
from loadtests.fanout import (
    delta_buckets,
    parse_histogram,
    process_cpu,
    quantile,
    udp_counters,
)
from media_relay.sockets import install_batched_reads
from signaling.auth import mint_token
from signaling.loop_lag import watch_loop_lag

SECRET = "interactive-benchmark-secret-0123456789"
LESSON = "bench-two-way"
TARGETS = {"stage_switch_ms": 1000.0, "p95_stage_forward_ms": 20.0}
REACH = 0.9
"""A stage switch is timed until this share of the other classrooms has its media."""
FORWARD_METRIC = "classroom_relay_forward_latency_seconds"
LAG_METRIC = "classroom_event_loop_lag_seconds"
GRID_SWITCH_METRIC = "classroom_grid_tile_switch_seconds"


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


def receiving_peer(kinds: tuple[str, ...]) -> light_receiver.LightPeer:
    """A recvonly peer whose receivers count what arrives (loadtests.light_receiver) and
    still send the receiver reports the server's rate controller reads."""
    return light_receiver.LightPeer(new_pc(), kinds)


async def negotiate(client: ClassroomClient, pc: RTCPeerConnection, purpose: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.request(
        {"type": "offer", "purpose": purpose, "sdp": pc.localDescription.sdp}, "answer",
        timeout=30)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
    client.pcs[purpose] = pc


class UplinkSizes:
    """The classroom page's two camera encodings (class.js UPLINK_THUMB / UPLINK_STAGE),
    each encoded once for every classroom: a thumbnail off stage, full size on stage."""

    def __init__(self) -> None:
        self.thumb = LoopedEncodedSource(320, 180, 15, bitrate=150_000)
        self.stage = LoopedEncodedSource(640, 360, 20, bitrate=300_000)

    async def start(self) -> None:
        await asyncio.gather(self.thumb.prepare(), self.stage.prepare())
        self.thumb.start()
        self.stage.start()

    async def close(self) -> None:
        await self.thumb.close()
        await self.stage.close()


class Classroom:
    """One remote classroom: uplink (shared encoder) and subscription (counted, not decoded)."""

    def __init__(self, base: str, index: int, *, low_bandwidth: bool = False) -> None:
        token = mint_token(SECRET, role="classroom", lesson=LESSON, school=f"school-{index}",
                           name=f"Class {index}", ttl=3600)
        self.client = ClassroomClient(base, token)
        self.index = index
        self.low_bandwidth = low_bandwidth
        self.uplink_video: EncodedTrack | None = None
        self._stage_watch: asyncio.Future | None = None
        self.counts: list[light_receiver.Counts] = []
        """camera, share, stage video; teacher audio, stage audio (the m-line order)"""

    @property
    def peer_id(self) -> str:
        return self.client.peer_id

    async def join(self, sizes: UplinkSizes) -> None:
        await self.client.connect(timeout=30)
        uplink = new_pc()
        for kind in ("video", "audio"):
            track = sizes.thumb.track(kind)
            if kind == "video":
                self.uplink_video = track
            transceiver = uplink.addTransceiver(track, direction="sendonly")
            sizes.thumb.attach_sender(transceiver.sender)
        self._stage_watch = asyncio.ensure_future(self._follow_stage(sizes))
        await negotiate(self.client, uplink, "uplink")
        sub = receiving_peer(("video", "video", "video", "audio", "audio"))
        self.counts = sub.counts
        await negotiate(self.client, sub.pc, "subscribe")
        await sub.connected()
        if self.low_bandwidth:  # the classroom's own button: at most the low tier
            await self.client.send({"type": "low-bandwidth", "on": True})

    async def _follow_stage(self, sizes: UplinkSizes) -> None:
        """What class.js does: full-size camera while this classroom is on stage, a
        thumbnail otherwise (the page calls setParameters on the ``stage`` event)."""
        seen = 0
        while True:
            try:
                message = await self.client.next_message("stage", timeout=3600, since=seen)
            except (ConnectionError, TimeoutError):
                return  # the classroom left (the end of the run)
            seen = self.client.messages.index(message) + 1
            on_stage = message.get("peer_id") == self.peer_id
            track = self.uplink_video
            wanted = sizes.stage if on_stage else sizes.thumb
            if track is not None and track.source is not wanted:
                track.source.move(track, wanted)

    def stage_counts(self) -> tuple[int, int]:
        """Stage video frames and stage audio packets received so far."""
        if not self.counts:
            return 0, 0
        return self.counts[2].frames, self.counts[4].frames

    @property
    def tier(self) -> str:
        """The last ``tier`` event for this classroom (``high`` before any)."""
        for message in reversed(self.client.messages):
            if message.get("type") == "tier" and message.get("peer_id") == self.peer_id:
                return message["tier"]
        return "high"

    def teacher_frames(self) -> int:
        return self.counts[0].frames if self.counts else 0


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


def lag_summary(buckets: dict[float, float]) -> dict:
    """p99 and the bound of the worst bucket of an event-loop lag histogram (ms)."""
    p99 = quantile(buckets, 0.99)
    seen = [bound for bound, count in sorted(buckets.items())
            if count > max((c for b, c in buckets.items() if b < bound), default=0)]
    return {"p99_ms": round(1000 * p99, 1) if p99 is not None else None,
            "worst_bucket_ms": 1000 * seen[-1] if seen else None,
            "over_500ms": buckets.get(float("inf"), 0) - buckets.get(0.5, 0)}


async def page_grid(teacher: ClassroomClient, server: Server, classrooms: list[Classroom],
                    grid_counts: list[light_receiver.Counts], slots: int,
                    metrics_before: str) -> dict | None:
    """The teacher turns the grid to its next page (after the measured window): how long
    each slot took, by the relay's clock, from the new view to the new classroom's first
    frame on it (a keyframe asked of that uplink), and whether every slot flows again."""
    page = [c.peer_id for c in classrooms[slots:2 * slots]]
    if not page:
        return None
    started = time.monotonic()
    await teacher.request({"type": "grid-view", "peers": page}, "grid", timeout=15)
    before = parse_histogram(metrics_before, GRID_SWITCH_METRIC).get("", {})
    deadline = started + 10
    observed: dict[float, float] = {}
    while time.monotonic() < deadline:
        text = await server.metrics()
        observed = delta_buckets(parse_histogram(text, GRID_SWITCH_METRIC).get("", {}),
                                 before)
        if observed and max(observed.values()) >= len(page):
            break
        await asyncio.sleep(0.1)
    frames = [c.frames for c in grid_counts[:len(page)]]
    await asyncio.sleep(1.0)
    flowing = sum(c.frames > f for c, f in zip(grid_counts, frames, strict=False))
    median, p100 = quantile(observed, 0.5), quantile(observed, 1.0)
    return {"tiles": len(page),
            "switched": int(max(observed.values())) if observed else 0,
            "switch_ms_median": round(1000 * median, 1) if median is not None else None,
            "switch_ms_max_bucket": round(1000 * p100, 1) if p100 is not None else None,
            "tiles_flowing_after": flowing}


def tier_counts(classrooms: list[Classroom]) -> dict[str, int]:
    """How many classrooms are on each tier (their last ``tier`` event)."""
    tiers: dict[str, int] = {}
    for c in classrooms:
        tiers[c.tier] = tiers.get(c.tier, 0) + 1
    return tiers


def connection_states(teacher: ClassroomClient, classrooms: list[Classroom]) -> dict[str, int]:
    """How many of the generator's peer connections are in each state, by purpose."""
    states: dict[str, int] = {}
    for client in [teacher] + [c.client for c in classrooms]:
        for purpose, pc in client.pcs.items():
            key = f"{purpose}:{pc.connectionState}"
            states[key] = states.get(key, 0) + 1
    return states


async def run(args: argparse.Namespace) -> dict:
    install_batched_reads()  # the generator's sockets drain like the server's
    server = Server()
    await server.start(args.serve_arg or [])
    own_lags: list[float] = []
    own_watch = asyncio.get_running_loop().create_task(
        watch_loop_lag(observe=own_lags.append))
    udp_start = udp_counters()
    sizes = UplinkSizes()
    teacher_source = LoopedEncodedSource(args.teacher_width, args.teacher_height, 30,
                                         bitrate=args.teacher_bitrate)
    await asyncio.gather(sizes.start(), teacher_source.prepare())
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
        grid = receiving_peer(("video",) * args.grid_slots + ("audio",))
        grid_counts = grid.counts
        await negotiate(teacher, grid.pc, "grid")
        await grid.connected()

        for start in range(0, args.classrooms, 5):
            batch = [Classroom(server.url, i, low_bandwidth=args.low_bandwidth)
                     for i in range(start, min(args.classrooms, start + 5))]
            await asyncio.gather(*(c.join(sizes) for c in batch))
            classrooms.extend(batch)
        await wait_for(lambda: all(c.teacher_frames() > 0 for c in classrooms), 60,
                       "teacher video at every classroom", interval=0.2)
        visible = [c.peer_id for c in classrooms[:args.grid_slots]]
        await teacher.request({"type": "grid-view", "peers": visible}, "grid", timeout=15)
        await wait_for(lambda: all(c.frames > 0 for c in grid_counts[:len(visible)]),
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
        states = connection_states(teacher, classrooms)

        await asyncio.sleep(args.warmup)
        udp0 = udp_counters()
        before_text = await server.metrics()
        cpu0, driver0, t0 = process_cpu(server.pid), process_cpu(os.getpid()), time.monotonic()
        main0 = process_cpu(server.pid, thread=server.pid)
        stage0 = {c.index: c.stage_counts()[0] for c in others}
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        cpu = (process_cpu(server.pid) - cpu0) / elapsed
        main_cpu = (process_cpu(server.pid, thread=server.pid) - main0) / elapsed
        driver_cpu = (process_cpu(os.getpid()) - driver0) / elapsed
        rss = rss_mb(server.pid)
        after_text = await server.metrics()
        udp1 = udp_counters()
        server_lag = parse_histogram(after_text, LAG_METRIC).get("", {})
        stage_fps = [(c.stage_counts()[0] - stage0[c.index]) / elapsed for c in others]
        page = await page_grid(teacher, server, classrooms, grid_counts, args.grid_slots,
                               after_text)
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
            "server_main_thread_cpu": round(main_cpu, 3),
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
            "connection_states_at_end": connection_states(teacher, classrooms),
            "tiers_at_end": tier_counts(classrooms),
            "grid_page": page,
            "tier_switches": sum(sum(m.get("type") == "tier" for m in c.client.messages)
                                 for c in classrooms),
            "server_loop_lag_whole_run": lag_summary(server_lag),
            "driver_loop_lag_max_ms": round(1000 * max(own_lags, default=0.0), 1),
            "driver_loop_lag_over_500ms": sum(lag >= 0.5 for lag in own_lags),
            "udp_drops_window": {k: udp1[k] - udp0.get(k, 0) for k in udp1},
            "udp_drops_whole_run": {k: udp1[k] - udp_start.get(k, 0) for k in udp1},
            "targets": TARGETS,
        }
    finally:
        own_watch.cancel()
        for c in classrooms:
            if c._stage_watch is not None:
                c._stage_watch.cancel()
            await c.client.close()
        await teacher.close()
        await sizes.close()
        await teacher_source.close()
        await server.stop()


def print_report(result: dict) -> None:
    print(f"two-way lesson, {result['classrooms']} classrooms, one on stage, "
          f"{result['grid_slots']} grid tiles visible, window {result['seconds']} s")
    print(f"  server cpu        {result['cpu_cores']:.3f} cores (event-loop thread "
          f"{result['server_main_thread_cpu']:.3f})   rss {result['rss_mb']} MB")
    print(f"  stage forward p95 {result['p95_stage_forward_ms']} ms   "
          f"(by kind: {result['forward_p95_ms_by_kind']})")
    print(f"  stage switch      median {result['stage_switch_ms']} ms, max "
          f"{result['stage_switch_ms_max']} ms (until {REACH:.0%} of the other classrooms "
          f"had video and audio)")
    for s in result["stage_switches"]:
        print(f"    {s}")
    print(f"  stage video fps at classrooms: min {result['stage_video_fps_min']}, "
          f"median {result['stage_video_fps_median']}")
    print(f"  connections after the switches: {result['connection_states']}; "
          f"at the end: {result['connection_states_at_end']}")
    page = result["grid_page"]
    if page:
        print(f"  grid paged to the next {page['tiles']} classrooms: {page['switched']} tiles "
              f"switched, median {page['switch_ms_median']} ms (max bucket "
              f"{page['switch_ms_max_bucket']} ms), {page['tiles_flowing_after']} flowing after")
    print(f"  tiers at the end: {result['tiers_at_end']} "
          f"({result['tier_switches']} tier events)")
    print(f"  event loop lag: server {result['server_loop_lag_whole_run']}, generator max "
          f"{result['driver_loop_lag_max_ms']} ms ({result['driver_loop_lag_over_500ms']} "
          f"wake-ups >= 500 ms); UDP drops in the window {result['udp_drops_window']}, "
          f"whole run {result['udp_drops_whole_run']}")
    print(f"  load generator cpu {result['driver_cpu_cores']} cores; "
          f"loadavg {' '.join(result['loadavg'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classrooms", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--switches", type=int, default=5)
    parser.add_argument("--grid-slots", type=int, default=9)
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
