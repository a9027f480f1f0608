"""Fan-out benchmark: what one more classroom costs the relay, against aiortc's MediaRelay.

    python -m loadtests.fanout --json out.json      # the sweep (a few minutes)
    python -m loadtests.fanout --subscribers 20     # one point of the product relay
    python -m loadtests.fanout --send-path tasks    # the product with a sender task per
                                                    # subscriber (before the batched path)

One publisher (synthetic 640x360 30 fps video with audio) and N subscribers, all in this
process, talk to a relay in a process of its own (``loadtests.relay_proc``); the relay
process's CPU is read from /proc/PID/stat over a steady window after a warm-up, its RSS
from /proc/PID/status. Subscribers count frames at the RTP level without decoding
(``install_counting_decoder``), so the cores measure the relay, not the clients.
Product: N = 0, 10, 20, 50; baseline (MediaRelay, an encoder per subscriber): N = 0, 5, 10.
The per-subscriber cost is the least-squares slope of CPU over N. The product encodes
while the publisher's media flows, so its N=0 point includes the encoder. Forward latency
is the relay's own histogram (arrival -> written for a subscriber, scraped from its
/metrics) over the window at the largest N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from classroom_client.media import (
    SyntheticAudioTrack,
    SyntheticVideoTrack,
    install_counting_decoder,
    receive_counts,
)
from media_relay.sockets import enlarge_receive_buffers

PRODUCT_SWEEP = (0, 10, 20, 50)
BASELINE_SWEEP = (0, 5, 10)
TARGETS = {"ratio": 20.0, "p95_forward_ms": 20.0, "delivered_fps_ratio": 0.95,
           "relay_rss_mb_per_subscriber": 2.0}
BASELINE_DELIVERING = 0.9
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- the relay process ---------------------------------------------------------------------
class RelayProcess:
    def __init__(self, mode: str, send_path: str = "batched") -> None:
        self.mode = mode
        self.send_path = send_path
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtests.relay_proc", "--mode", self.mode, "--port", "0",
            "--send-path", self.send_path, stdout=asyncio.subprocess.PIPE)
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"relay process did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def parse_histogram(text: str, name: str) -> dict[str, dict[float, float]]:
    """``{kind: {upper_bound: cumulative count}}`` from Prometheus text (kind "" for a
    histogram without a ``kind`` label)."""
    out: dict[str, dict[float, float]] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, value = line[len(prefix):].rsplit("} ", 1)
        parts = dict(p.split("=", 1) for p in labels.split(","))
        kind = parts.get("kind", "").strip('"')
        le = parts["le"].strip('"')
        out.setdefault(kind, {})[float("inf") if le == "+Inf" else float(le)] = float(value)
    return out


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Quantile of cumulative buckets, linear inside a bucket (Prometheus' method)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def delta_buckets(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {b: after[b] - before.get(b, 0.0) for b in after}


# ---- the clients (this process) --------------------------------------------------------------
def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate(session: aiohttp.ClientSession, url: str, path: str, peer_id: str,
                    pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with session.post(f"{url}{path}", json={"peer_id": peer_id,
                                                  "sdp": pc.localDescription.sdp}) as resp:
        body = await resp.json()
    if "sdp" not in body:
        raise RuntimeError(f"{path} failed: {body}")
    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))


class Subscriber:
    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.tracks: dict[str, object] = {}

        @pc.on("track")
        def on_track(track) -> None:
            self.tracks[track.kind] = track

    def counts(self) -> tuple[int, int]:
        video, audio = self.tracks.get("video"), self.tracks.get("audio")
        return (receive_counts(video).frames if video else 0,
                receive_counts(audio).frames if audio else 0)


AddSubscribers = Callable[[aiohttp.ClientSession, str, list[str]], Awaitable[int]]
"""(session, relay url, peer ids) -> connect those subscribers; returns how many there are."""


async def serve_commands(add: AddSubscribers, counts: Callable[[], list]) -> None:
    """A subscriber process's protocol: JSON commands on stdin, one JSON reply line each
    on stdout. ``{"cmd": "add", "url": U, "ids": [...]}`` connects subscribers (``add``);
    ``{"cmd": "counts"}`` replies ``{"counts": [[video_frames, audio_packets], ...],
    "cpu": s}``; EOF ends."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command["cmd"] == "add":
                reply: dict = {"ok": await add(session, command["url"], command["ids"])}
            else:
                reply = {"counts": counts(), "cpu": process_cpu("self")}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


async def worker_main() -> None:
    """A subscriber process of aiortc receivers with a counting decoder (serve_commands)."""
    install_counting_decoder()
    subscribers: list[Subscriber] = []

    async def add(session: aiohttp.ClientSession, url: str, ids: list[str]) -> int:
        batch = []
        for peer_id in ids:
            pc = new_pc()
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            subscribers.append(Subscriber(pc))
            batch.append(negotiate(session, url, "/subscribe", peer_id, pc))
        await asyncio.gather(*batch)
        for sub in subscribers[-len(batch):]:
            enlarge_receive_buffers(sub.pc, 1 << 20)
        return len(subscribers)

    await serve_commands(add, lambda: [s.counts() for s in subscribers])
    for sub in subscribers:
        await sub.pc.close()


def process_cpu(pid: int | str, thread: int | None = None) -> float:
    """CPU-seconds (user + system) of a process, or of one of its threads (``thread``:
    its tid; the main thread's tid is the pid)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Worker:
    """The driver's handle on one subscriber process."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.size = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtests.fanout", "--worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def call(self, command: dict, timeout: float = 60) -> dict:
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("subscriber process died")
        return json.loads(line)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@dataclass
class Point:
    mode: str
    subscribers: int
    cpu: float
    rss_mb: float
    delivered_min: float | None
    delivered_mean: float | None
    audio_delivered_min: float | None
    sent_fps: float
    p95_ms: dict[str, float | None] = field(default_factory=dict)
    p95_all_ms: float | None = None
    client_cpu: float | None = None
    relay_drops: int | None = None
    relay_rendition: dict | None = None
    relay_queue_wait: dict | None = None
    relay_send: dict | None = None
    udp_errors: dict | None = None


async def run_mode(mode: str, sweep: tuple[int, ...], warmup: float, window: float,
                   client_procs: int, log, send_path: str = "batched") -> list[Point]:
    relay = RelayProcess(mode, send_path)
    await relay.start()
    workers = [Worker() for _ in range(client_procs)]
    for worker in workers:
        await worker.start()
    points: list[Point] = []
    publisher = new_pc()
    total = 0

    async def counts() -> tuple[list[tuple[int, int]], float]:
        replies = await asyncio.gather(*(w.call({"cmd": "counts"}) for w in workers))
        return ([tuple(c) for r in replies for c in r["counts"]],
                sum(r["cpu"] for r in replies) + process_cpu("self"))

    async def all_receiving() -> bool:
        got, _ = await counts()
        return all(v > 0 and a > 0 for v, a in got)

    try:
        async with aiohttp.ClientSession() as session:
            video, audio = SyntheticVideoTrack(640, 360, 30), SyntheticAudioTrack()
            publisher.addTransceiver(video, direction="sendonly")
            publisher.addTransceiver(audio, direction="sendonly")
            await negotiate(session, relay.url, "/publish", "teacher", publisher)

            async def published() -> bool:
                return publisher.connectionState == "connected"

            await wait_until(published, 20, "publisher connected")
            for target in sweep:
                while total < target:  # batches of up to 10, spread over the workers
                    calls = []
                    for worker in workers:
                        n = min(5, target - total)
                        if n <= 0:
                            break
                        ids = [f"c{total + i}" for i in range(n)]
                        total += n
                        calls.append(worker.call({"cmd": "add", "url": relay.url, "ids": ids}))
                    await asyncio.gather(*calls)
                await wait_until(all_receiving, 30, "every subscriber receiving")
                await asyncio.sleep(warmup)
                async with session.get(f"{relay.url}/metrics") as resp:
                    hist0 = parse_histogram(await resp.text(),
                                            "classroom_relay_forward_latency_seconds")
                got0, client_cpu0 = await counts()
                udp0 = udp_counters()
                cpu0, t0, sent0 = relay.cpu_seconds(), time.monotonic(), video.frames_sent
                audio_sent0 = audio.frames_sent
                await asyncio.sleep(window)
                cpu1, t1, sent1 = relay.cpu_seconds(), time.monotonic(), video.frames_sent
                audio_sent1 = audio.frames_sent
                got1, client_cpu1 = await counts()
                udp1 = udp_counters()
                async with session.get(f"{relay.url}/metrics") as resp:
                    hist1 = parse_histogram(await resp.text(),
                                            "classroom_relay_forward_latency_seconds")
                async with session.get(f"{relay.url}/stats") as resp:
                    relay_stats = await resp.json()
                sent = max(1, sent1 - sent0)
                audio_sent = max(1, audio_sent1 - audio_sent0)
                pairs = list(zip(got0, got1, strict=True))
                ratios = [(b[0] - a[0]) / sent for a, b in pairs]
                audio_ratios = [(b[1] - a[1]) / audio_sent for a, b in pairs]
                p95 = {}
                combined: dict[float, float] = {}
                for kind, buckets in hist1.items():
                    delta = delta_buckets(buckets, hist0.get(kind, {}))
                    q = quantile(delta, 0.95)
                    p95[kind] = round(q * 1000, 2) if q is not None else None
                    for bound, count in delta.items():
                        combined[bound] = combined.get(bound, 0.0) + count
                q_all = quantile(combined, 0.95) if combined else None
                point = Point(
                    mode=mode, subscribers=target,
                    cpu=round((cpu1 - cpu0) / (t1 - t0), 4), rss_mb=round(relay.rss_mb(), 1),
                    delivered_min=round(min(ratios), 3) if ratios else None,
                    delivered_mean=round(sum(ratios) / len(ratios), 3) if ratios else None,
                    audio_delivered_min=round(min(audio_ratios), 3) if audio_ratios else None,
                    sent_fps=round(sent / (t1 - t0), 1), p95_ms=p95,
                    p95_all_ms=round(q_all * 1000, 2) if q_all is not None else None,
                    client_cpu=round((client_cpu1 - client_cpu0) / (t1 - t0), 3),
                    relay_drops=_drops(relay_stats), relay_queue_wait=_waits(relay_stats),
                    relay_send=_send_stats(relay_stats),
                    udp_errors={k: udp1[k] - udp0.get(k, 0) for k in udp1},
                    relay_rendition=(relay_stats.get("lessons", {}).get("bench") or {}).get(
                        "renditions", [None])[0])
                points.append(point)
                log(f"  {mode:8s} N={target:3d}  cpu={point.cpu:.3f} CPU-s/s  "
                    f"rss={point.rss_mb:.1f} MB  delivered min={point.delivered_min} "
                    f"audio min={point.audio_delivered_min}  sent={point.sent_fps} fps  "
                    f"p95={p95}  clients cpu={point.client_cpu}  relay drops={point.relay_drops}")
                log(f"    rendition: {point.relay_rendition}")
                log(f"    subscriber queue wait: {point.relay_queue_wait}")
                log(f"    send path: {point.relay_send}  udp errors (machine): {point.udp_errors}")
    finally:
        await publisher.close()
        for worker in workers:
            await worker.stop()
        await relay.stop()
    return points


def _waits(stats: dict) -> dict | None:
    lesson = stats.get("lessons", {}).get("bench")
    if not lesson or not lesson["subscribers"]:
        return None
    subs = list(lesson["subscribers"].values())
    return {kind: {"avg_ms": round(sum(s[kind]["wait_ms_avg"] or 0 for s in subs) / len(subs), 2),
                   "max_ms": max(s[kind]["wait_ms_max"] for s in subs)}
            for kind in ("video", "audio") if kind in subs[0]}


def udp_counters() -> dict[str, int]:
    """Machine-wide UDP drop counters (/proc/net/snmp): packets lost in socket buffers."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        values = dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))
    except (OSError, IndexError, ValueError):
        return {}
    return {k: values[k] for k in ("RcvbufErrors", "SndbufErrors", "InErrors") if k in values}


def _send_stats(stats: dict) -> dict | None:
    """Totals over the subscribers' batched streams (lifetime counters, not the window)."""
    lesson = stats.get("lessons", {}).get("bench")
    if not lesson or not lesson["subscribers"]:
        return None
    subs = list(lesson["subscribers"].values())
    video = [s["video"] for s in subs if s.get("video", {}).get("path") == "batched"]
    if not video:
        return None
    lost = [v["fraction_lost"] for v in video if v.get("fraction_lost") is not None]
    rtts = [v["rtt_ms"] for v in video if v.get("rtt_ms") is not None]
    return {"nacked": sum(v["nacked"] for v in video),
            "retransmits": sum(v["retransmits"] for v in video),
            "keyframe_requests": sum(s["keyframe_requests"] for s in subs),
            "max_fraction_lost": max(lost) if lost else None,
            "max_rtt_ms": max(rtts) if rtts else None}


def _drops(stats: dict) -> int | None:
    lesson = stats.get("lessons", {}).get("bench")
    if not lesson:
        return None
    return sum(s.get("video", {}).get("dropped", 0) for s in lesson["subscribers"].values())


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def summarize(product: list[Point], baseline: list[Point]) -> dict:
    result: dict = {}
    if len(product) >= 2:
        xs = [p.subscribers for p in product]
        result["relay_cpu_per_subscriber"] = round(slope(xs, [p.cpu for p in product]), 5)
        result["relay_rss_mb_per_subscriber"] = round(slope(xs, [p.rss_mb for p in product]), 3)
        loaded = [p for p in product if p.subscribers > 0]
        if len(loaded) >= 2:
            result["relay_cpu_per_subscriber_excluding_idle"] = round(
                slope([p.subscribers for p in loaded], [p.cpu for p in loaded]), 5)
    # The issue takes the baseline slope over N = 0, 5, 10 "where it still delivers
    # >= 90 % of the frames": a saturated point measures the machine's cap, not the cost
    # of a subscriber. The slope over every point is kept beside it (``*_all_points``).
    delivering = [p for p in baseline
                  if p.subscribers == 0 or (p.delivered_min or 0) >= BASELINE_DELIVERING]
    result["baseline_points_delivering"] = [p.subscribers for p in delivering]
    if len(baseline) >= 2:
        result["baseline_cpu_per_subscriber_all_points"] = round(
            slope([p.subscribers for p in baseline], [p.cpu for p in baseline]), 5)
        result["baseline_rss_mb_per_subscriber"] = round(
            slope([p.subscribers for p in baseline], [p.rss_mb for p in baseline]), 3)
    if len(delivering) >= 2:
        result["baseline_cpu_per_subscriber"] = round(
            slope([p.subscribers for p in delivering], [p.cpu for p in delivering]), 5)
    relay = result.get("relay_cpu_per_subscriber")
    if relay:
        if "baseline_cpu_per_subscriber" in result:
            result["ratio"] = round(result["baseline_cpu_per_subscriber"] / relay, 1)
        if "baseline_cpu_per_subscriber_all_points" in result:
            result["ratio_all_points"] = round(
                result["baseline_cpu_per_subscriber_all_points"] / relay, 1)
    if product:
        top = max(product, key=lambda p: p.subscribers)
        result["p95_forward_ms"] = top.p95_all_ms
        result["p95_forward_ms_by_kind"] = top.p95_ms
        result["delivered_fps_ratio"] = top.delivered_min
        result["delivered_at_subscribers"] = top.subscribers
    result["points"] = [asdict(p) for p in product + baseline]
    return result


def print_report(result: dict) -> None:
    print()
    print(f"{'relay':9s} {'N':>4s} {'CPU-s/s':>8s} {'RSS MB':>7s} {'delivered':>10s} "
          f"{'p95 audio ms':>13s} {'p95 video ms':>13s}")
    for p in result["points"]:
        print(f"{p['mode']:9s} {p['subscribers']:4d} {p['cpu']:8.3f} {p['rss_mb']:7.1f} "
              f"{p['delivered_min']!s:>10s} {p['p95_ms'].get('audio')!s:>13s} "
              f"{p['p95_ms'].get('video')!s:>13s}")
    print()
    checks = [
        ("relay CPU-s/s per subscriber", result.get("relay_cpu_per_subscriber"), None),
        ("baseline CPU-s/s per subscriber", result.get("baseline_cpu_per_subscriber"), None),
        ("ratio (baseline / relay)", result.get("ratio"), (">=", TARGETS["ratio"])),
        ("  ratio over every baseline point", result.get("ratio_all_points"), None),
        ("p95 forward latency ms", result.get("p95_forward_ms"), ("<=", TARGETS["p95_forward_ms"])),
        ("delivered fps ratio (worst)", result.get("delivered_fps_ratio"),
         (">=", TARGETS["delivered_fps_ratio"])),
        ("relay RSS MB per subscriber", result.get("relay_rss_mb_per_subscriber"),
         ("<", TARGETS["relay_rss_mb_per_subscriber"])),
    ]
    for name, value, target in checks:
        verdict = ""
        if target is not None and value is not None:
            op, bound = target
            ok = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
            verdict = f"target {op} {bound}: {'PASS' if ok else 'FAIL'}"
        print(f"  {name:34s} {value!s:>10s}  {verdict}")


async def main_async(args: argparse.Namespace) -> dict:
    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.monotonic()
    load_before = os.getloadavg()
    if args.subscribers is not None:
        sweep = (args.subscribers,)
        product = await run_mode(args.mode, sweep, args.warmup, args.window,
                                 args.client_procs, log, args.send_path)
        result = {"points": [asdict(p) for p in product]}
        if product:
            result.update({"p95_forward_ms": product[0].p95_all_ms,
                           "delivered_fps_ratio": product[0].delivered_min,
                           "cpu": product[0].cpu, "rss_mb": product[0].rss_mb})
    else:
        log(f"product relay (encode once, {args.send_path} send path):")
        product = await run_mode("product", PRODUCT_SWEEP, args.warmup, args.window,
                                 args.client_procs, log, args.send_path)
        log("baseline (aiortc MediaRelay, an encoder per subscriber):")
        baseline = await run_mode("baseline", BASELINE_SWEEP, args.warmup, args.window,
                                  args.client_procs, log)
        result = summarize(product, baseline)
        print_report(result)
    result["send_path"] = args.send_path
    result["window_seconds"] = args.window
    result["warmup_seconds"] = args.warmup
    result["cpu_count"] = os.cpu_count()
    # the machine is shared: a high load average means the figures include other work
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["elapsed_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Relay fan-out benchmark against MediaRelay.")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--subscribers", type=int, help="run one point with N subscribers")
    parser.add_argument("--mode", choices=("product", "baseline"), default="product",
                        help="relay for --subscribers (default product)")
    parser.add_argument("--window", type=float, default=12.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="subscriber processes (one Python process tops out near 60)")
    parser.add_argument("--send-path", choices=("batched", "tasks"), default="batched",
                        help="product relay's send path (RelayConfig.batched_send)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main())
        return
    result = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
