"""Transcoding a recording piece by piece, while it is recorded, so replay is ready soon.

The closed segments of a recording are grouped, in index order, into *chunks* of at least
``chunk_seconds`` (the last chunk of a finished recording may be shorter). Each chunk is
decoded with a fresh decoder (every segment starts at a keyframe) and encoded to every
rung of the ladder by fresh H.264 encoders (first frame IDR, then keyframes on the
recording's 2 s grid, no B-frames), so the chunks of one rung concatenate into one
stream without re-encoding. A chunk also holds its thumbnails (``t%05d.jpg``, one every
``thumbnail_every`` on the recording's grid), the poster if it falls in it, and the
loudness measure of its audio (the gain is decided once the whole lesson is known; AAC
is encoded at the end, see packager.py).

On disk, beside the segments::

    chunks/plan.json          offset, ladder: what every chunk is encoded against
    chunks/c-00001/           one complete chunk (built in c-00001.tmp/, then renamed)
        chunk.json            its segments [[seq, bytes], ...], rungs, thumbs, loudness
        360p.mkv 180p.mkv ... thumbs/t00001.jpg ... poster.jpg
        audio.pcm             its audio decoded (mono s16): AAC is encoded at the end

Crash safety: a chunk exists only once renamed, after its files are fsync'd; a killed
job leaves a ``.tmp`` folder that the next job removes. A chunk is reused only while its
segments are still the index's (same seq and size, in order); from the first one that is
not (a recovery salvaged or set aside a segment), it and every later chunk are redone.
A change of plan (another first segment or ladder) redoes them all. One job at a time
per recording (``flock`` on ``chunks/.lock``).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .segments import SEGMENT_DIR, SegmentInfo, fsync_dir, read_index
from .transcode import (
    PackagerConfig,
    Rung,
    VideoOut,
    decode_pcm,
    decoded,
    jpeg,
    ladder,
    loudness_blocks,
)

CHUNK_DIR = "chunks"
PLAN_FILE = "plan.json"
CHUNK_FILE = "chunk.json"
AUDIO_FILE = "audio.pcm"
"""The chunk's audio: mono s16 48 kHz PCM from sample ``audio.first`` of the recording."""
PLAN_VERSION = 1


@dataclass
class Chunk:
    index: int
    directory: Path
    info: dict[str, Any]

    @property
    def segments(self) -> list[list[int]]:
        return self.info["segments"]


def chunk_name(index: int) -> str:
    return f"c-{index:05d}"


@contextmanager
def locked(directory: Path) -> Iterator[Path]:
    """Exclusive use of a recording's chunks (waits for another job on the same folder)."""
    root = Path(directory) / CHUNK_DIR
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
    finally:
        os.close(fd)


def make_plan(segments: list[SegmentInfo], cfg: PackagerConfig) -> dict[str, Any]:
    """What every chunk of this recording is encoded against."""
    video = next((s for s in segments if s.width and s.height), None)
    rungs = []
    if video is not None:
        for rung, w, h in ladder(video.width, video.height, cfg):
            rungs.append({"name": rung.name, "height": rung.height, "bitrate": rung.bitrate,
                          "fps": rung.fps, "width": w, "out_height": h})
    return {"version": PLAN_VERSION, "offset_ms": segments[0].start_ms, "rungs": rungs,
            "preset": cfg.preset, "keyframe_seconds": cfg.keyframe_seconds,
            "thumbnail_every": cfg.thumbnail_every}


def group(segments: list[SegmentInfo], chunk_seconds: float,
          final: bool) -> list[list[SegmentInfo]]:
    """Segments in chunks of at least ``chunk_seconds``; the short tail only when final."""
    groups: list[list[SegmentInfo]] = []
    current: list[SegmentInfo] = []
    for seg in segments:
        current.append(seg)
        if current[-1].end_ms - current[0].start_ms >= chunk_seconds * 1000:
            groups.append(current)
            current = []
    if current and final:
        groups.append(current)
    return groups


def _signature(segs: list[SegmentInfo]) -> list[list[int]]:
    return [[s.seq, s.bytes] for s in segs]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_chunks(root: Path) -> list[Chunk]:
    """The complete chunks in ``root``, in order (stray ``.tmp`` folders removed)."""
    chunks = []
    for path in sorted(root.glob("c-*")):
        if path.name.endswith(".tmp"):
            shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            info = json.loads((path / CHUNK_FILE).read_text(encoding="utf-8"))
            index = int(path.name[2:])
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
            continue
        chunks.append(Chunk(index, path, info))
    return chunks


def chunk_audio(paths: list[Path], offset_ms: int) -> dict[str, Any]:
    """A chunk's audio: ``first`` sample, ``pcm``, loudness ``blocks`` and ``peak``."""
    try:
        first, pcm = decode_pcm(paths, offset_ms)
        return {**loudness_blocks(pcm), "first": first, "pcm": pcm}
    except Exception as exc:  # noqa: BLE001 - kept in the chunk's record
        return {"error": str(exc)}


def transcode_chunk(directory: Path, root: Path, index: int, segs: list[SegmentInfo],
                    plan: dict[str, Any], cfg: PackagerConfig, poster_at_ms: float,
                    audio: dict[str, Any] | None = None) -> Chunk:
    """Encode one chunk to every rung, with its thumbnails and loudness; atomic on disk.

    ``audio``: the chunk's :func:`chunk_audio` when already made (else made here, in a
    thread beside the video)."""
    final = root / chunk_name(index)
    work = root / (chunk_name(index) + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    (work / "thumbs").mkdir(parents=True)
    paths = [directory / SEGMENT_DIR / s.file for s in segs]
    offset = plan["offset_ms"]

    audio_thread = None
    if audio is None:
        audio = {}

        def measure() -> None:
            assert audio is not None
            audio.update(chunk_audio(paths, offset))

        audio_thread = threading.Thread(target=measure, daemon=True)
        audio_thread.start()

    outs: list[VideoOut] = []
    thumbs: list[list[Any]] = []
    poster = False
    first_ms = last_ms = None
    if plan["rungs"] and any(s.width for s in segs):
        for r in plan["rungs"]:
            rung = Rung(r["name"], r["height"], r["bitrate"], r["fps"])
            outs.append(VideoOut(work / f"{rung.name}.mkv", rung, r["width"],
                                 r["out_height"], cfg))
        key_ms = plan["keyframe_seconds"] * 1000
        thumb_ms = plan["thumbnail_every"] * 1000
        next_key = -math.inf  # the chunk's first frame is a keyframe in every rung
        next_thumb = math.ceil((segs[0].start_ms - offset) / thumb_ms)
        for ms, frame in decoded(paths, "video"):
            t = ms - offset
            key = t >= next_key
            if key:
                next_key = (math.floor(t / key_ms) + 1) * key_ms
            for o in outs:
                o.add(frame, t, key)
            first_ms = t if first_ms is None else first_ms
            last_ms = t
            if t >= next_thumb * thumb_ms:
                name = f"t{next_thumb:05d}.jpg"
                (work / "thumbs" / name).write_bytes(jpeg(frame, cfg.thumbnail_width))
                thumbs.append([t, name])
                next_thumb = math.floor(t / thumb_ms) + 1
            if not poster and t >= poster_at_ms and (
                    index == 1 or segs[0].start_ms - offset <= poster_at_ms):
                (work / "poster.jpg").write_bytes(
                    jpeg(frame, min(cfg.poster_width, frame.width // 2 * 2)))
                poster = True
        for o in outs:
            o.close()
    if audio_thread is not None:
        audio_thread.join()
    pcm = audio.get("pcm")
    if pcm is not None:
        pcm.tofile(work / AUDIO_FILE)
    info = {
        "segments": _signature(segs),
        "start_ms": segs[0].start_ms - offset, "end_ms": segs[-1].end_ms - offset,
        "rungs": [o.rung.name for o in outs if o.frames],
        "frames": {o.rung.name: o.frames for o in outs},
        "video_ms": [first_ms, last_ms],
        "thumbs": thumbs, "poster": poster,
        "loudness": {"blocks": [round(b, 1) for b in audio.get("blocks", [])],
                     "peak": audio.get("peak", 0)},
        "audio": {"first": audio.get("first", 0),
                  "samples": int(pcm.size) if pcm is not None else 0},
        "audio_error": audio.get("error"),
    }
    for path in work.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _write_json(work / CHUNK_FILE, info)
    os.replace(work, final)
    fsync_dir(root)
    return Chunk(index, final, info)


AudioReady = Callable[[list[Chunk], list[dict[str, Any]]], None]


def update(directory: Path, cfg: PackagerConfig, *, final: bool,
           segments: list[SegmentInfo] | None = None,
           on_audio: AudioReady | None = None) -> tuple[list[Chunk], int]:
    """Bring a recording's chunks up to date with its index; returns (chunks, newly made).

    ``final``: the recording is finished, the short tail becomes the last chunk.
    ``on_audio(kept, pending)``: called with the chunks already made and the
    :func:`chunk_audio` of those still to make, before their video is encoded (the final
    packaging starts the AAC encode then, beside the tail's video).
    The caller holds :func:`locked`.
    """
    directory = Path(directory)
    root = directory / CHUNK_DIR
    root.mkdir(parents=True, exist_ok=True)
    if segments is None:
        segments = read_index(directory)
    if not segments:
        return [], 0
    plan = make_plan(segments, cfg)
    try:
        old_plan = json.loads((root / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old_plan = None
    existing = load_chunks(root)
    if old_plan != plan:
        for chunk in existing:
            shutil.rmtree(chunk.directory, ignore_errors=True)
        existing = []
        _write_json(root / PLAN_FILE, plan)
    groups = group(segments, cfg.chunk_seconds, final)
    kept: list[Chunk] = []
    for i, chunk in enumerate(existing):
        if (i < len(groups) and chunk.index == i + 1
                and chunk.segments == _signature(groups[i])):
            kept.append(chunk)
            continue
        for stale in existing[i:]:
            shutil.rmtree(stale.directory, ignore_errors=True)
        break
    total_ms = segments[-1].end_ms - segments[0].start_ms
    poster_at = min(10_000, 0.1 * total_ms)
    pending: list[dict[str, Any] | None] = [None] * (len(groups) - len(kept))
    if on_audio is not None:
        pending = [chunk_audio([directory / SEGMENT_DIR / s.file for s in groups[i]],
                               plan["offset_ms"]) for i in range(len(kept), len(groups))]
        on_audio(list(kept), [a for a in pending if a is not None])
    made = 0
    for j, i in enumerate(range(len(kept), len(groups))):
        kept.append(transcode_chunk(directory, root, i + 1, groups[i], plan, cfg, poster_at,
                                    pending[j]))
        made += 1
    return kept, made


def audio_pieces(chunks: list[Chunk]) -> Iterator[tuple[int, np.ndarray]]:
    """Each chunk's PCM with its first sample, in order (for :func:`encode_aac`)."""
    for chunk in chunks:
        audio = chunk.info.get("audio") or {}
        if audio.get("samples"):
            yield audio["first"], np.fromfile(chunk.directory / AUDIO_FILE, np.int16)


def covered_seconds(chunks: list[Chunk]) -> float:
    """How much of the recording the chunks hold."""
    return round(chunks[-1].info["end_ms"] / 1000, 3) if chunks else 0.0
