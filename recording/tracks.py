"""The lines recorded beside the teacher: the shared slides and the classroom on stage.

Each line (``recorder.LINES``) is recorded as the relay encoded it for the classrooms (no
re-encode on the live path) into its own folder, ``tracks/<line>/``, laid out like the
recording itself (``segments/``, ``index.jsonl``, ``chunks/``) and on the teacher's
timeline, so the same chunk transcode and the same crash recovery work on it unchanged.

For replay each line becomes one H.264 rung (the share at its own size up to 720p, the stage
at 360p) in ``<line>.mp4`` (faststart, video only: every browser plays it, with or without
hls.js), beside the teacher's HLS. The manifest entry of a line says where it is in the
lesson: ``offset`` (lesson seconds of its first frame: its MP4 time 0) and ``ranges``
(lesson seconds where it had media, from the segments' spans), so the replay page shows the
slides while a share was on and the stage classroom while one was on stage. The stage
classroom's voice is mixed into the lesson's audio (:func:`mix`), as the classrooms heard it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import chunks as chunking
from .segments import SPAN_GAP_MS, SegmentInfo, read_index
from .transcode import PackagerConfig, Rung

TRACK_DIR = "tracks"
LINE_RUNGS = {"share": Rung("720p", 720, 1_000_000, 15), "stage": Rung("360p", 360, 600_000, 30)}
"""One rung per line: slides need their detail more than frames; a classroom is a small
picture beside the teacher."""


def line_config(name: str, cfg: PackagerConfig) -> PackagerConfig:
    """The packager settings of a line: its one rung, the rest as the lesson's."""
    return dataclasses.replace(cfg, ladder=[LINE_RUNGS[name]])


def lines_of(directory: Path) -> list[tuple[str, Path]]:
    """The recorded lines of a recording folder that hold segments."""
    out = []
    for name in LINE_RUNGS:
        path = Path(directory) / TRACK_DIR / name
        if read_index(path):
            out.append((name, path))
    return out


def update_chunks(directory: Path, cfg: PackagerConfig, *, final: bool) -> dict[str, Any]:
    """Bring every line's chunks up to date (while recording, and at the end)."""
    done = {}
    for name, path in lines_of(directory):
        with chunking.locked(path):
            chunks, made = chunking.update(path, line_config(name, cfg), final=final)
        done[name] = {"chunks": chunks, "made": made}
    return done


def ranges(segments: list[SegmentInfo], offset_ms: int) -> list[list[float]]:
    """Lesson seconds where the line had video (segments' spans, gaps over SPAN_GAP_MS)."""
    spans: list[list[int]] = []
    for seg in segments:
        if not seg.video_frames:
            continue
        for start, end in seg.spans or [[seg.start_ms, seg.end_ms]]:
            if spans and start - spans[-1][1] <= SPAN_GAP_MS:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
    return [[round((a - offset_ms) / 1000, 3), round((b - offset_ms) / 1000, 3)]
            for a, b in spans]


def stage_audio(directory: Path, main_offset_ms: int) -> list[tuple[int, np.ndarray]]:
    """The stage classroom's decoded audio pieces, as samples of the lesson's timeline."""
    path = Path(directory) / TRACK_DIR / "stage"
    segs = read_index(path)
    if not segs:
        return []
    shift = (segs[0].start_ms - main_offset_ms) * 48
    chunks = chunking.load_chunks(path / chunking.CHUNK_DIR)
    return [(first + shift, pcm) for first, pcm in chunking.audio_pieces(chunks)]


def mix(pieces: Iterable[tuple[int, np.ndarray]],
        extra: list[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
    """The lesson's audio pieces with ``extra`` (the stage) added where they overlap."""
    for first, pcm in pieces:
        if not extra:
            yield first, pcm
            continue
        out = pcm.astype(np.int32)
        end = first + pcm.size
        for e_first, e_pcm in extra:
            a, b = max(first, e_first), min(end, e_first + e_pcm.size)
            if a < b:
                out[a - first:b - first] += e_pcm[a - e_first:b - e_first]
        yield first, np.clip(out, -32768, 32767).astype(np.int16)


def entry(name: str, path: Path, main_offset_ms: int, rung: dict[str, Any],
          uri: str) -> dict[str, Any]:
    """The manifest entry of a packaged line."""
    segs = read_index(path)
    return {"name": name, "kind": name, "uri": uri, "width": rung["width"],
            "height": rung["out_height"],
            "offset": round((segs[0].start_ms - main_offset_ms) / 1000, 3),
            "ranges": ranges(segs, main_offset_ms)}
