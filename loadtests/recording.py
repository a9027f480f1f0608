"""Recording benchmark: what recording a lesson costs the live server, and packaging time.

    python -m loadtests.recording --seconds 30 --json out.json
    python -m loadtests.recording --seconds 30 --lesson-minutes 45 --json out.json

The same lesson runs against a real ``classroom serve`` process (a teacher publishing
synthetic 640x360 30 fps video with a tone, one classroom subscribed and counting frames
without decoding): once with recording off (``--no-recording``), once recorded with the
background packaging off (``CLASSROOM_PACKAGE_CHUNK_SECONDS=0``), and once recorded with
it on (60 s chunks: that run is measured over at least ``2 x 60 + 10`` s so that chunk
jobs fall in it). CPU is read from /proc after a warm-up: the server process itself
(utime + stime, all threads) and, for the packaging, its whole tree (plus the children
it reaped, cutime + cstime, plus the live children), as fractions of one core.
``recording_cpu_overhead`` is recorded minus unrecorded, server process only, without
background packaging (what the live lesson pays); ``..._with_background_packaging`` adds
the niced chunk jobs.

Packaging: the recorded lesson is packaged (``python -m recording.packager``, the same
child the server runs) and timed (``packaging_seconds`` / ``lesson_seconds``).
``--lesson-minutes N`` measures a long lesson's time to ready **without recording it in
real time**: the recorder writes N minutes of real VP8 + Opus packets (a 10 s loop encoded
once, replayed with advancing timestamps) faster than real time; the chunk job runs once
when all but the last ``chunk_seconds`` are recorded, so between one and two chunks are
left for the end (the worst case of a worker that keeps up: the chunk closed last plus
the tail), the rest is recorded, and the final packaging is timed, niced as the server
runs it (``--final-nice``, 10): ``ready_after_end_seconds`` (and its CPU seconds). The chunk
job's CPU over the lesson's length says whether the worker keeps up during a lesson.
``--ten-minutes`` packages a synthesized 10-minute recording from scratch (no chunks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from classroom_client import ClassroomClient
from classroom_client.media import (
    SyntheticAudioTrack,
    SyntheticVideoTrack,
    install_counting_decoder,
)
from signaling.auth import mint_token

SECRET = "loadtest-recording-secret-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_OVERHEAD = 0.05


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process, the children it reaped, and its live descendants."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / CLK_TCK
    except OSError:
        return 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += _tree_cpu(int(entry))
    return total


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _server(library: Path, record: bool,
                  chunk_seconds: float = 0) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "CLASSROOM_PACKAGE_CHUNK_SECONDS": str(chunk_seconds)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling.cli", "serve", "--port", str(port), "--secret",
         SECRET, "--library", str(library), "--no-demo", "--log-level", "warning",
         *([] if record else ["--no-recording"])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(base + "/healthz") as r:
                    if r.status == 200:
                        return proc, base
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def run_lesson(library: Path, seconds: float, record: bool,
                     warmup: float = 3.0, chunk_seconds: float = 0) -> dict:
    proc, base = await _server(library, record, chunk_seconds)
    lesson = f"bench-{'rec' if record else 'plain'}"
    teacher = ClassroomClient(base, mint_token(SECRET, role="teacher", lesson=lesson,
                                               name="T", school="S"))
    room = ClassroomClient(base, mint_token(SECRET, role="classroom", lesson=lesson,
                                            name="R", school="S2"))
    try:
        await teacher.connect()
        await teacher.publish(SyntheticVideoTrack(640, 360, 30), SyntheticAudioTrack())
        await teacher.start_lesson()
        await room.connect()
        await room.subscribe()
        await asyncio.sleep(warmup)
        tree0 = _tree_cpu(proc.pid)
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        tree1 = _tree_cpu(proc.pid)
        tiers = await _tiers_in_use(base, lesson)
        recording_id = None
        if record:
            for m in teacher.messages:
                if m.get("type") == "recording" and m.get("recording_id"):
                    recording_id = m["recording_id"]
        await teacher.end_lesson()
        await asyncio.sleep(1.0)  # the last segment is closed
        return {"cpu_fraction": (cpu1 - cpu0) / (t1 - t0), "window": t1 - t0,
                "tree_cpu_fraction": (tree1 - tree0) / (t1 - t0),
                "recording_id": recording_id, "loadavg": _loadavg(),
                "tiers_in_use": tiers}
    finally:
        for c in (room, teacher):
            await c.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _tiers_in_use(base: str, lesson: str) -> list[str] | None:
    """The tiers the relay encodes for the lesson (recording keeps the top one encoded)."""
    token = mint_token(SECRET, role="admin", lesson="*")
    try:
        async with aiohttp.ClientSession() as http, http.get(
                base + "/api/relay", headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.json()
    except (aiohttp.ClientError, ValueError):
        return None
    stats = (body.get("lessons") or {}).get(lesson) if isinstance(body, dict) else None
    return stats.get("tiers_in_use") if isinstance(stats, dict) else None


def _loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def time_packaging(directory: Path, *args: str, nice: int = 0) -> dict:
    """Run the packager child as the server does; wall seconds, CPU seconds, its summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "recording.packager", str(directory), *args],
        capture_output=True, text=True, check=False,
        preexec_fn=(lambda: os.nice(nice)) if nice else None)
    seconds = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        summary = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(out.stderr[-2000:]) from None
    if "error" in summary:
        raise RuntimeError(summary["error"])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_seconds": cpu, "summary": summary,
            "loadavg": _loadavg()}


async def synthesize(directory: Path, seconds: float) -> float:
    """Write a recording of ``seconds`` of real VP8/Opus packets (faster than real time)."""
    from loadtests.packet_source import PacketSource
    from recording.recorder import Recorder

    recorder = Recorder(directory)
    source = PacketSource(640, 360, 30, keyframe_every=2.0)
    chunk = 30.0
    done = 0.0
    while done < seconds:
        step = min(chunk, seconds - done)
        source.feed(recorder, step, t0=1000.0 + done)
        done += step
        while recorder.stats()["queued"] > 200:
            await asyncio.sleep(0.05)
    await recorder.stop()
    return recorder.duration_ms / 1000


class LoopedSource:
    """``loop_seconds`` of real VP8 + Opus packets encoded once, replayed with advancing
    timestamps: hours of recording without encoding hours of video."""

    def __init__(self, loop_seconds: float = 10.0) -> None:
        from loadtests.packet_source import PacketSource

        source = PacketSource(640, 360, 30, keyframe_every=2.0)
        self.loop = loop_seconds
        self.items = [(kind, bytes(p), p.pts, bool(p.opaque.keyframe), arrival - 1000.0)
                      for kind, p, arrival in source.interleaved(loop_seconds)]
        self.done = 0.0

    def feed(self, recorder, seconds: float, t0: float = 1000.0) -> None:
        from media_relay.packets import (
            AUDIO_TIME_BASE,
            VIDEO_TIME_BASE,
            PacketMeta,
            make_packet,
        )

        end = self.done + seconds
        while self.done < end - 1e-6:
            n = round(self.done / self.loop)
            for kind, data, pts, key, rel in self.items:
                video = kind == "video"
                pts = pts + n * int(self.loop * (90000 if video else 48000))
                packet = make_packet(data, pts, VIDEO_TIME_BASE if video else AUDIO_TIME_BASE,
                                     PacketMeta([data], pts, key, 0.0))
                recorder.enqueue(kind, packet, t0 + self.done + rel)
            self.done += self.loop


async def _drain(recorder) -> None:
    while recorder.stats()["queued"] > 0:
        await asyncio.sleep(0.05)


def _progress(what: str, data: dict) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}: {json.dumps(data, default=str)} "
          f"load {_loadavg()}", file=sys.stderr, flush=True)


async def long_lesson(directory: Path, minutes: float, chunk_seconds: float = 60.0,
                      final_nice: int = 10) -> dict:
    """Time to ready after the end of a long lesson packaged while it was recorded."""
    from recording.recorder import Recorder, RecorderConfig

    lesson = minutes * 60
    # the worker looks every 5 s and keeps up: at the end at most the chunk closed last
    # and the tail are left (here between 1 and 2 chunks)
    tail = chunk_seconds
    source = LoopedSource()
    recorder = Recorder(directory, config=RecorderConfig(queue_limit=10**7, fsync=False))
    t0 = time.monotonic()
    while source.done < lesson - tail:
        source.feed(recorder, source.loop)
        await _drain(recorder)
    synth = time.monotonic() - t0
    _progress("synthesized", {"seconds": source.done, "in": round(synth, 1)})
    # what the worker does over the lesson, time compressed: its CPU is the figure (its
    # wall time here says nothing about a real lesson, where it has the lesson's length)
    during = time_packaging(directory, "--chunks-only", "--chunk-seconds", str(chunk_seconds))
    _progress("chunks during the lesson", {k: during[k] for k in ("seconds", "cpu_seconds")})
    while source.done < lesson:
        source.feed(recorder, source.loop)
        await _drain(recorder)
    await recorder.stop()
    recorded = recorder.duration_ms / 1000
    final = time_packaging(directory, "--chunk-seconds", str(chunk_seconds), nice=final_nice)
    _progress("final", {k: final[k] for k in ("seconds", "cpu_seconds")})
    covered = during["summary"]["covered"]
    return {
        "lesson_seconds": round(recorded, 1),
        "ready_after_end_seconds": round(final["seconds"], 2),
        "final_cpu_seconds": round(final["cpu_seconds"], 1),
        "final_chunks": final["summary"]["chunks"],
        "final_loadavg": final["loadavg"],
        "final_nice": final_nice,
        "during_lesson_chunk_seconds": round(during["seconds"], 1),
        "during_lesson_chunk_cpu_seconds": round(during["cpu_seconds"], 1),
        "during_lesson_covered_seconds": covered,
        "during_lesson_cpu_per_lesson_second": round(during["cpu_seconds"] / covered, 4),
        "during_lesson_wall_per_lesson_second": round(during["seconds"] / covered, 4),
        "during_loadavg": during["loadavg"],
        "synthesized_in_seconds": round(synth, 1),
        "renditions": [r["name"] for r in final["summary"]["renditions"]],
        "replay_bytes": final["summary"]["size"],
    }


async def main_async(args: argparse.Namespace) -> dict:
    install_counting_decoder()
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        tmp_path = Path(tmp)
        plain = await run_lesson(tmp_path / "plain", args.seconds, record=False)
        _progress("unrecorded", plain)
        recorded = await run_lesson(tmp_path / "rec", args.seconds, record=True)
        _progress("recorded", recorded)
        overhead = recorded["cpu_fraction"] - plain["cpu_fraction"]
        background = None
        if not args.no_background:
            background = await run_lesson(
                tmp_path / "bg", max(args.seconds, 2 * args.chunk_seconds + 10), record=True,
                chunk_seconds=args.chunk_seconds)
            _progress("recorded, packaging while recording", background)
        rec_dir = tmp_path / "rec" / "recordings" / str(recorded["recording_id"])
        packaged = time_packaging(rec_dir)
        _progress("packaged", {k: packaged[k] for k in ("seconds", "cpu_seconds")})
        result = {
            "recording_cpu_overhead": round(overhead, 4),
            "packaging_seconds": round(packaged["seconds"], 2),
            "lesson_seconds": round(packaged["summary"]["duration"], 2),
            "packaging_cpu_seconds": round(packaged["cpu_seconds"], 2),
            "measured_seconds": args.seconds,
            "cpu_unrecorded": round(plain["cpu_fraction"], 4),
            "cpu_recorded": round(recorded["cpu_fraction"], 4),
            "tiers_in_use": [plain.get("tiers_in_use"), recorded.get("tiers_in_use")],
            "loadavg": [plain["loadavg"], recorded["loadavg"]],
            "target_overhead": TARGET_OVERHEAD,
            "renditions": [{k: r.get(k) for k in ("name", "height", "average_bps")}
                           for r in packaged["summary"]["renditions"]],
            "replay_bytes": packaged["summary"]["size"],
        }
        if background is not None:
            result["background_packaging"] = {
                "chunk_seconds": args.chunk_seconds,
                "window_seconds": round(background["window"], 1),
                "cpu_server_process": round(background["cpu_fraction"], 4),
                "cpu_with_children": round(background["tree_cpu_fraction"], 4),
                "loadavg": background["loadavg"],
            }
            result["recording_cpu_overhead_with_background_packaging"] = round(
                background["tree_cpu_fraction"] - plain["tree_cpu_fraction"], 4)
            result["recording_cpu_overhead_server_process_with_background_packaging"] = round(
                background["cpu_fraction"] - plain["cpu_fraction"], 4)
        if args.lesson_minutes:
            long = await long_lesson(tmp_path / "long", args.lesson_minutes, args.chunk_seconds,
                                     args.final_nice)
            result["ready_after_end_seconds"] = long["ready_after_end_seconds"]
            result["long_lesson"] = long
        if args.ten_minutes:
            ten = tmp_path / "ten"
            t0 = time.monotonic()
            recorded_seconds = await synthesize(ten, 600.0)
            synth = time.monotonic() - t0
            packaged = time_packaging(ten)
            result["packaging_10min_seconds"] = round(packaged["seconds"], 2)
            result["packaging_10min_lesson_seconds"] = round(recorded_seconds, 2)
            result["packaging_10min_ratio"] = round(packaged["seconds"] / recorded_seconds, 4)
            result["synthesize_10min_seconds"] = round(synth, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.recording",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--lesson-minutes", type=float, default=0,
                        help="also measure time to ready of a lesson this long (e.g. 45), "
                             "synthesized faster than real time")
    parser.add_argument("--chunk-seconds", type=float, default=60.0)
    parser.add_argument("--final-nice", type=int, default=10,
                        help="niceness of the timed final packaging (the server uses 10)")
    parser.add_argument("--no-background", action="store_true",
                        help="skip the run with packaging while recording")
    parser.add_argument("--ten-minutes", action="store_true",
                        help="also package a synthesized 10-minute recording")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
