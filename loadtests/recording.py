"""Recording benchmark: what recording a lesson costs the live server, and packaging time.

    python -m loadtests.recording --seconds 30 --json out.json
    python -m loadtests.recording --seconds 30 --ten-minutes --json out.json

The same lesson runs twice against a real ``classroom serve`` process (a teacher publishing
synthetic 640x360 30 fps video with a tone, one classroom subscribed and counting frames
without decoding): once with recording off (``CLASSROOM_RECORDING=0``), once with it on.
The server's CPU (utime + stime of the whole process, all threads, from /proc/PID/stat)
is read over the lesson after a warm-up; the overhead is the difference, as a fraction of
one core. Packaging: the recorded lesson is packaged (``python -m recording.packager``,
the same child process the server runs) and timed; ``--ten-minutes`` also synthesizes a
10-minute recording (real VP8 + Opus packets, written by the recorder) and packages it.

JSON: ``recording_cpu_overhead`` (fraction of one core), ``packaging_seconds``,
``lesson_seconds``, and the details (cpu of each run, sizes, renditions, the 10-minute
figures when asked).
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _server(library: Path, record: bool) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "CLASSROOM_RECORDING": "1" if record else "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling.cli", "serve", "--port", str(port), "--secret",
         SECRET, "--library", str(library), "--no-demo", "--log-level", "warning"],
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
                     warmup: float = 3.0) -> dict:
    proc, base = await _server(library, record)
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
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        recording_id = None
        if record:
            for m in teacher.messages:
                if m.get("type") == "recording" and m.get("recording_id"):
                    recording_id = m["recording_id"]
        await teacher.end_lesson()
        await asyncio.sleep(1.0)  # the last segment is closed
        return {"cpu_fraction": (cpu1 - cpu0) / (t1 - t0), "window": t1 - t0,
                "recording_id": recording_id}
    finally:
        for c in (room, teacher):
            await c.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def time_packaging(directory: Path) -> dict:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "recording.packager", str(directory)],
                         capture_output=True, text=True, check=False)
    seconds = time.monotonic() - t0
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    if "error" in summary:
        raise RuntimeError(summary["error"])
    return {"seconds": seconds, "summary": summary}


async def synthesize(directory: Path, seconds: float) -> float:
    """Write a recording of ``seconds`` of real VP8/Opus packets (faster than real time)."""
    from recording.recorder import Recorder
    from tests.recording.media import PacketSource

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


async def main_async(args: argparse.Namespace) -> dict:
    install_counting_decoder()
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        tmp_path = Path(tmp)
        plain = await run_lesson(tmp_path / "plain", args.seconds, record=False)
        recorded = await run_lesson(tmp_path / "rec", args.seconds, record=True)
        overhead = recorded["cpu_fraction"] - plain["cpu_fraction"]
        rec_dir = tmp_path / "rec" / "recordings" / str(recorded["recording_id"])
        packaged = time_packaging(rec_dir)
        result = {
            "recording_cpu_overhead": round(overhead, 4),
            "packaging_seconds": round(packaged["seconds"], 2),
            "lesson_seconds": round(packaged["summary"]["duration"], 2),
            "measured_seconds": args.seconds,
            "cpu_unrecorded": round(plain["cpu_fraction"], 4),
            "cpu_recorded": round(recorded["cpu_fraction"], 4),
            "target_overhead": TARGET_OVERHEAD,
            "renditions": [{k: r.get(k) for k in ("name", "height", "average_bps")}
                           for r in packaged["summary"]["renditions"]],
            "replay_bytes": packaged["summary"]["size"],
        }
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
