"""Packaging while recording: chunks made during the lesson are reused at the end, and a
job killed mid-chunk or a recovery that changes a segment redoes only what it must."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from loadtests.packet_source import PacketSource
from recording import chunks as chunking
from recording.packager import REPLAY_DIR, PackagerConfig, package, package_chunks
from recording.recorder import Recorder
from recording.segments import SEGMENT_DIR, read_index

CFG = PackagerConfig(chunk_seconds=3.0)


async def record(directory: Path, seconds: float) -> None:
    recorder = Recorder(directory)
    PacketSource(320, 180, keyframe_every=1.0).feed(recorder, seconds)
    await recorder.stop()


def video_times(playlist: Path) -> tuple[list[float], list[float]]:
    """Decoded frame times and keyframe packet times of a rung."""
    with av.open(str(playlist)) as c:
        keys = [float(p.pts * p.time_base) for p in c.demux(video=0)
                if p.is_keyframe and p.pts is not None]
    with av.open(str(playlist)) as c:
        times = [float(f.time) for f in c.decode(video=0)]
    return times, keys


async def test_chunks_made_while_recording_are_reused_and_join_seamlessly(tmp_path):
    await record(tmp_path, 10.0)
    partial = package_chunks(tmp_path, CFG)
    # complete chunks only: the short tail waits for the end of the lesson
    assert partial["made"] == partial["chunks"] >= 2
    assert partial["covered"] < 10.0
    assert package_chunks(tmp_path, CFG)["made"] == 0  # nothing new: nothing redone

    summary = package(tmp_path, CFG)
    assert summary["chunks"]["reused"] == partial["chunks"]
    assert summary["chunks"]["made_now"] == summary["chunks"]["total"] - partial["chunks"]
    assert not list((tmp_path / chunking.CHUNK_DIR).glob("c-*"))  # intermediates removed
    replay = tmp_path / REPLAY_DIR
    for rendition in summary["renditions"]:
        if rendition["kind"] != "video":
            continue
        times, keys = video_times(replay / rendition["uri"])
        # no hole and no step back where two chunks meet
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(steps) > 0 and max(steps) < 0.2, (rendition["name"], max(steps))
        assert times[-1] - times[0] > summary["duration"] - 1.0
        # a keyframe at least every 2 s in every rung (players switch rungs there)
        assert max(b - a for a, b in zip(keys, keys[1:], strict=False)) <= 2.05
    names = [r["name"] for r in summary["renditions"]]
    assert names == ["180p", "audio"]
    with av.open(str(replay / "lesson.mp4")) as c:
        assert float(c.duration / 1e6) > summary["duration"] - 1.0
    assert summary["thumbnails"] == len(list((replay / "thumbs").glob("t*.jpg"))) >= 1
    # one gain for the whole lesson (chunks made during the lesson and the tail alike):
    # the tone comes out at the loudness target, and lasts the whole lesson
    assert summary["audio"]["gain_db"] < -1.0, summary["audio"]
    with av.open(str(replay / "hls" / "audio" / "index.m3u8")) as c:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert pcm.size / 48000 > summary["duration"] - 0.5
    body = pcm[48000:-48000].astype(np.float64)  # away from the codec's ramps
    rms_db = 20 * np.log10(np.sqrt(np.mean(body ** 2)))  # float samples, full scale 1.0
    assert abs(rms_db - CFG.target_dbfs) < 1.5, rms_db
    assert (replay / "poster.jpg").read_bytes()[:2] == b"\xff\xd8"


async def test_a_killed_job_and_a_changed_segment_are_redone(tmp_path):
    await record(tmp_path, 10.0)
    first = package_chunks(tmp_path, CFG)
    root = tmp_path / chunking.CHUNK_DIR
    made = sorted(p.name for p in root.glob("c-*"))
    assert len(made) == first["chunks"] >= 2
    # a job killed while writing chunk N+1 leaves a .tmp folder
    stray = root / (chunking.chunk_name(len(made) + 1) + ".tmp")
    stray.mkdir()
    (stray / "180p.mkv").write_bytes(b"half a file")
    # a recovery rewrote the second chunk's first segment (salvaged: other bytes)
    second = json.loads((root / made[1] / chunking.CHUNK_FILE).read_text())
    seq = second["segments"][0][0]
    index = tmp_path / "index.jsonl"
    lines = [json.loads(x) for x in index.read_text().splitlines() if x.strip()]
    for line in lines:
        if line["seq"] == seq:
            line["bytes"] += 1
            with open(tmp_path / SEGMENT_DIR / line["file"], "ab") as fh:
                fh.write(b"\0")
    index.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert [s.seq for s in read_index(tmp_path)] == [x["seq"] for x in lines]

    summary = package(tmp_path, CFG)
    assert summary["chunks"]["reused"] == 1  # only the first chunk still matches
    assert summary["chunks"]["made_now"] == summary["chunks"]["total"] - 1
    assert not stray.exists()
    assert summary["duration"] > 9.0


def test_chunk_job_runs_as_a_child_process(tmp_path):
    import asyncio

    asyncio.run(record(tmp_path, 8.0))
    out = subprocess.run(
        [sys.executable, "-m", "recording.packager", str(tmp_path), "--chunks-only",
         "--chunk-seconds", "3"], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["made"] >= 2 and result["covered"] >= 6.0
    bad = subprocess.run([sys.executable, "-m", "recording.packager",
                          str(tmp_path / "nothing-here"), "--chunks-only"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "no recording" in json.loads(bad.stdout)["error"]
    assert not (tmp_path / "nothing-here").exists()
