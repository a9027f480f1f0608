"""The recorder on real encoded packets: segments, index, faults, recovery."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from loadtests.packet_source import PacketSource
from recording import metrics
from recording.packager import package
from recording.recorder import Recorder, RecorderConfig
from recording.recovery import recover_segments
from recording.segments import INDEX_FILE, SEGMENT_DIR, read_index
from tests.recording.conftest import decode_counts


def errors(reason: str) -> float:
    return metrics.ERRORS.labels(reason=reason)._value.get()


async def record(directory: Path, seconds: float, **kw) -> Recorder:
    recorder = Recorder(directory, **kw)
    PacketSource().feed(recorder, seconds)
    await recorder.stop()
    return recorder


async def test_segments_are_complete_indexed_and_decodable(tmp_path):
    rec = await record(tmp_path, 6.0)
    segments = read_index(tmp_path)
    assert [s.seq for s in segments] == [1, 2, 3]
    assert segments == rec.segments
    assert not list((tmp_path / SEGMENT_DIR).glob("*.part"))
    for seg in segments:
        frames, samples, _ = decode_counts(tmp_path / SEGMENT_DIR / seg.file)
        assert frames == seg.video_frames
        assert 0 <= seg.audio_packets * 960 - samples <= 312  # OpusHead pre-skip
        with av.open(str(tmp_path / SEGMENT_DIR / seg.file)) as c:
            first = next(c.demux(video=0))
            assert first.is_keyframe  # every segment starts at a keyframe
    assert segments[0].start_ms == 0
    assert abs(segments[-1].end_ms - 6000) < 100
    assert rec.stats()["bytes"] == sum(s.bytes for s in segments)


async def test_shared_packets_are_not_changed(tmp_path):
    source = PacketSource()
    packets = list(source.interleaved(2.0))
    before = [(bytes(p), p.pts, p.time_base, p.opaque) for _, p, _ in packets]
    recorder = Recorder(tmp_path)
    for kind, packet, arrival in packets:
        recorder.enqueue(kind, packet, arrival)
    await recorder.stop()
    assert [(bytes(p), p.pts, p.time_base, p.opaque) for _, p, _ in packets] == before


async def test_pause_cuts_the_gap_out(tmp_path):
    recorder = Recorder(tmp_path)
    source = PacketSource()
    source.feed(recorder, 3.0, t0=1000.0)
    recorder.pause(at=1003.0)
    source.feed(recorder, 2.0, t0=1003.0)  # not recorded
    recorder.resume(at=1005.0)
    source.feed(recorder, 3.0, t0=1005.0)
    await recorder.stop()
    segments = read_index(tmp_path)
    total = segments[-1].end_ms - segments[0].start_ms
    assert 4500 <= total <= 6500, total  # ~6 s recorded, the paused 2 s are not a hole


class FullDisk:
    """An opener whose files fail with ENOSPC after ``budget`` bytes in total."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, path: Path):
        owner = self
        fh = open(path, "wb")  # noqa: SIM115

        class File:
            def write(self, data):
                if owner.budget < len(data):
                    raise OSError(errno.ENOSPC, "No space left on device")
                owner.budget -= len(data)
                return fh.write(data)

            def __getattr__(self, name):
                return getattr(fh, name)

        return File()


async def test_full_disk_injected_keeps_going_and_counts(tmp_path):
    before = errors("disk_full")
    disk = FullDisk(budget=60_000)
    cfg = RecorderConfig(retry_seconds=1.0)
    recorder = Recorder(tmp_path, config=cfg, opener=disk)
    source = PacketSource()
    source.feed(recorder, 6.0, t0=1000.0)
    disk.budget = 10**9  # space freed: recording resumes at the next keyframe after retry
    source.feed(recorder, 4.0, t0=1006.0)
    segments = await recorder.stop()
    assert errors("disk_full") > before
    assert recorder.errors >= 1 and "disk_full" in recorder.last_error
    assert segments and segments == read_index(tmp_path)
    assert any(s.start_ms >= 6000 for s in segments)  # written again after the fault
    for seg in segments:  # what was written stays playable
        frames, _, _ = decode_counts(tmp_path / SEGMENT_DIR / seg.file)
        assert frames == seg.video_frames
    assert not list((tmp_path / SEGMENT_DIR).glob("*.part"))


def _mount_tmpfs(path: Path, size: str) -> bool:
    if shutil.which("mount") is None:
        return False
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


async def test_full_disk_real_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "200k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected test covers it")
    try:
        before = errors("disk_full")
        recorder = Recorder(mnt / "rec", config=RecorderConfig(retry_seconds=0.5))
        PacketSource().feed(recorder, 20.0)
        segments = await recorder.stop()
        assert errors("disk_full") > before
        assert segments
        for seg in segments:
            frames, _, _ = decode_counts(mnt / "rec" / SEGMENT_DIR / seg.file)
            assert frames == seg.video_frames
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


async def test_writer_behind_drops_instead_of_growing(tmp_path):
    before = errors("overflow")
    recorder = Recorder(tmp_path, config=RecorderConfig(queue_limit=50))
    # stall the writer: hold the queue by pushing faster than it can ever drain
    # (4 s: ~320 packets queued within a millisecond, far over the limit of 50)
    writer_packets = list(PacketSource().interleaved(4.0))
    for kind, packet, arrival in writer_packets:
        recorder.enqueue(kind, packet, arrival)
    segments = await recorder.stop()
    assert recorder.dropped > 0 and errors("overflow") > before
    assert recorder.stats()["queued"] == 0
    for seg in segments:
        frames, _, _ = decode_counts(tmp_path / SEGMENT_DIR / seg.file)
        assert frames == seg.video_frames


async def test_recover_salvages_a_torn_segment_and_a_missed_index_line(tmp_path):
    await record(tmp_path, 8.0)
    segments = read_index(tmp_path)
    segdir = tmp_path / SEGMENT_DIR
    # the process died while writing the last segment: its bytes are there, not complete
    last = segdir / segments[-1].file
    data = last.read_bytes()
    last.unlink()
    (segdir / last.name.replace(".webm", ".part")).write_bytes(data[: len(data) * 2 // 3])
    # ... and between renaming the one before and appending its index line
    lines = (tmp_path / INDEX_FILE).read_bytes().splitlines(keepends=True)
    (tmp_path / INDEX_FILE).write_bytes(b"".join(lines[:-2]) + lines[-2][:10])  # torn line
    recovered = recover_segments(tmp_path)
    assert [s.seq for s in recovered] == [s.seq for s in segments]
    assert recovered[-1].salvaged
    assert recovered[-1].video_frames > 0
    assert not list(segdir.glob("*.part"))
    assert read_index(tmp_path) == recovered
    for seg in recovered:
        frames, _, _ = decode_counts(segdir / seg.file)
        assert frames == seg.video_frames


async def test_corrupt_segment_is_set_aside_and_the_rest_packages(tmp_path):
    await record(tmp_path, 8.0)
    segments = read_index(tmp_path)
    segdir = tmp_path / SEGMENT_DIR
    bad = segdir / segments[1].file
    bad.write_bytes(b"\x00garbage" * 500)  # same path, different content and size
    recovered = recover_segments(tmp_path)
    assert segments[1].seq not in [s.seq for s in recovered]
    assert (segdir / bad.name).with_suffix(".corrupt").exists()
    summary = package(tmp_path)
    assert summary["duration"] > 6.0
    frames, samples, _ = decode_counts(tmp_path / "replay" / "lesson.mp4")
    assert frames > 0 and samples > 0


async def test_garbage_inside_a_segment_does_not_stop_packaging(tmp_path):
    await record(tmp_path, 6.0)
    segments = read_index(tmp_path)
    path = tmp_path / SEGMENT_DIR / segments[1].file
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400):
        data[i] ^= 0x5A  # flip bytes in the middle: same size, index still matches
    path.write_bytes(bytes(data))
    summary = package(tmp_path)
    assert summary["duration"] > 5.0
    assert any(r["kind"] == "video" for r in summary["renditions"])


