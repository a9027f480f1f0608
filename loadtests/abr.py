"""Ladder cost: encode once per tier in use, not per subscriber.

    python -m loadtests.abr --subscribers 30 --json out.json

A 1280x720 30 fps synthetic teacher (with audio; its video encoded realtime like a
browser's, ``--teacher aiortc`` for aiortc's slower encoder) and N subscribers (in worker
processes that count frames without decoding: ``install_counting_decoder``, as in
loadtests.fanout) against a relay process of its
own (``loadtests.relay_proc --mode pinned``: no rate control, each subscriber pinned to
a tier). Two runs, each at N = 10 and N = ``--subscribers``: the ladder (subscribers spread
round-robin over high / mid / low) and a single tier (everyone on high). Written:
``ladder_cpu`` and ``single_tier_cpu`` (relay CPU-seconds per second at the largest N),
``per_subscriber_cpu`` and ``single_tier_per_subscriber_cpu`` (slopes between the two N),
``tiers_in_use`` (the ladder run's), ``delivered_fps_ratio`` (worst subscriber of either
run: video frames received / frames its tier encoded over the window), the points, and
the machine's load averages (``loadavg``: the 2 cores are shared, quote them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import aiohttp

from classroom_client.media import EncodedVideoTrack, SyntheticAudioTrack, SyntheticVideoTrack

from .fanout import RelayProcess, Worker, negotiate, new_pc, wait_until

TIERS = ("high", "mid", "low")


def loadavg() -> list[float]:
    """The machine's 1/5/15-minute load averages (the cores are shared: quote them)."""
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def teacher_video(kind: str):
    if kind == "aiortc":  # aiortc's own encoder: cpu-used -6 and a noise filter, costly
        return SyntheticVideoTrack(1280, 720, 30)
    return EncodedVideoTrack(1280, 720, 30, bitrate=2_000_000)


async def run(label: str, tiers: tuple[str, ...], sweep: tuple[int, ...], warmup: float,
              window: float, client_procs: int, log, teacher: str = "encoded") -> list[dict]:
    relay = RelayProcess("pinned")
    await relay.start()
    workers = [Worker() for _ in range(client_procs)]
    for worker in workers:
        await worker.start()
    ids: list[list[str]] = [[] for _ in workers]
    publisher = new_pc()
    points: list[dict] = []
    total = 0

    async def counts() -> dict[str, tuple[int, int]]:
        replies = await asyncio.gather(*(w.call({"cmd": "counts"}) for w in workers))
        out = {}
        for names, reply in zip(ids, replies, strict=True):
            out.update(zip(names, (tuple(c) for c in reply["counts"]), strict=True))
        return out

    async def all_receiving() -> bool:
        return all(v > 0 and a > 0 for v, a in (await counts()).values())

    async def stats(session: aiohttp.ClientSession) -> dict:
        async with session.get(f"{relay.url}/stats") as resp:
            return await resp.json()

    def encoded(s: dict) -> dict[str, int]:
        lesson = s.get("lessons", {}).get("bench") or {}
        out = {r["tier"]: r["frames_encoded"] for r in lesson.get("renditions", [])}
        out["source"] = max((r["frames_in"] for r in lesson.get("renditions", [])), default=0)
        return out

    try:
        async with aiohttp.ClientSession() as session:
            video, audio = teacher_video(teacher), SyntheticAudioTrack()
            publisher.addTransceiver(video, direction="sendonly")
            publisher.addTransceiver(audio, direction="sendonly")
            await negotiate(session, relay.url, "/publish", "teacher", publisher)

            async def published() -> bool:
                return publisher.connectionState == "connected"

            await wait_until(published, 20, "publisher connected")
            for target in sweep:
                while total < target:
                    calls = []
                    for index, worker in enumerate(workers):
                        n = min(5, target - total)
                        if n <= 0:
                            break
                        batch = [f"{tiers[(total + i) % len(tiers)]}-c{total + i}"
                                 for i in range(n)]
                        ids[index].extend(batch)
                        total += n
                        calls.append(worker.call({"cmd": "add", "url": relay.url,
                                                  "ids": batch}))
                    await asyncio.gather(*calls)
                try:
                    await wait_until(all_receiving, 30, "every subscriber receiving")
                except RuntimeError:
                    log(f"counts: {await counts()}\nrelay: {json.dumps(await stats(session))}")
                    raise
                await asyncio.sleep(warmup)
                got0, enc0 = await counts(), encoded(await stats(session))
                cpu0, t0 = relay.cpu_seconds(), time.monotonic()
                load0 = loadavg()
                await asyncio.sleep(window)
                cpu1, t1 = relay.cpu_seconds(), time.monotonic()
                load1 = loadavg()
                got1, s1 = await counts(), await stats(session)
                enc1 = encoded(s1)
                ratios = {}
                for name, (v1, _) in got1.items():
                    tier = name.split("-", 1)[0]
                    sent = max(1, enc1.get(tier, 0) - enc0.get(tier, 0))
                    ratios[name] = (v1 - got0.get(name, (0, 0))[0]) / sent
                lesson = s1.get("lessons", {}).get("bench") or {}
                point = {
                    "run": label, "subscribers": target,
                    "cpu": round((cpu1 - cpu0) / (t1 - t0), 4),
                    "rss_mb": round(relay.rss_mb(), 1),
                    "tiers_in_use": lesson.get("tiers_in_use"),
                    "encoded_fps": {t: round((enc1.get(t, 0) - enc0.get(t, 0)) / (t1 - t0), 1)
                                    for t in enc1 if t != "source"},
                    "source_fps": round((enc1["source"] - enc0.get("source", 0)) / (t1 - t0), 1),
                    "delivered_min": round(min(ratios.values()), 3) if ratios else None,
                    "loadavg": [load0, load1],
                }
                points.append(point)
                log(f"  {label:6s} N={target:3d} cpu={point['cpu']:.3f} CPU-s/s "
                    f"tiers={point['tiers_in_use']} source fps={point['source_fps']} "
                    f"encoded fps={point['encoded_fps']} "
                    f"delivered min={point['delivered_min']} loadavg={load1}")
    finally:
        await publisher.close()
        for worker in workers:
            await worker.stop()
        await relay.stop()
    return points


def slope(points: list[dict]) -> float | None:
    if len(points) < 2:
        return None
    a, b = points[0], points[-1]
    return round((b["cpu"] - a["cpu"]) / (b["subscribers"] - a["subscribers"]), 5)


async def main_async(args: argparse.Namespace) -> dict:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    sweep = tuple(sorted({10, args.subscribers}))
    load_start = loadavg()
    ladder = await run("ladder", TIERS, sweep, args.warmup, args.window, args.clients, log,
                       args.teacher)
    single = await run("single", ("high",), sweep, args.warmup, args.window, args.clients, log,
                       args.teacher)
    delivered = [p["delivered_min"] for p in ladder + single if p["delivered_min"] is not None]
    return {
        "ladder_cpu": ladder[-1]["cpu"],
        "single_tier_cpu": single[-1]["cpu"],
        "per_subscriber_cpu": slope(ladder),
        "single_tier_per_subscriber_cpu": slope(single),
        "tiers_in_use": ladder[-1]["tiers_in_use"],
        "delivered_fps_ratio": min(delivered) if delivered else None,
        "points": ladder + single,
        "source": "1280x720 30 fps synthetic VP8 + Opus ("
                  + ("aiortc's encoder" if args.teacher == "aiortc"
                     else "PyAV libvpx realtime, 2 Mbit/s, as a browser sends it") + ")",
        "subscribers_decode": False,
        "loadavg": {"start": load_start, "end": loadavg()},
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes")
    parser.add_argument("--teacher", choices=("encoded", "aiortc"), default="encoded",
                        help="how the 720p source is encoded (default: like a browser)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
