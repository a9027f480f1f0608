"""A recording's folder on disk: self-contained WebM segments and their index.

One folder per recording::

    segments/seg-000001.webm     VP8 + Opus, starts at a video keyframe, ~2 s, self-contained
    segments/seg-000002.part     the segment being written (renamed when it is complete)
    index.jsonl                  one JSON line per complete segment, appended and fsync'd

A segment is closed, fsync'd and renamed before its index line is appended (one
``write`` + ``fsync``), so a ``kill -9`` loses at most the segment being written (and
recovery.py salvages even that). :class:`SegmentFile` is one segment being written
(by the recorder's writer thread, or by the salvage); :func:`read_index` is what the
packager and the chunk jobs read.
"""

from __future__ import annotations

import fractions
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import av

MS = fractions.Fraction(1, 1000)
SEGMENT_DIR = "segments"
INDEX_FILE = "index.jsonl"
SEGMENT_SUFFIX = ".webm"
PART_SUFFIX = ".part"

SPAN_GAP_MS = 4000
"""No video frame for this long: the line was off (a still screen sends a frame a second)."""

Opener = Callable[[Path], IO[bytes]]
"""Opens a segment file for writing (tests inject faults here)."""

@dataclass
class SegmentInfo:
    seq: int
    file: str
    start_ms: int
    end_ms: int
    bytes: int
    width: int = 0
    height: int = 0
    video_frames: int = 0
    audio_packets: int = 0
    salvaged: bool = False
    spans: list[list[int]] | None = None
    """Where video flowed ``[[start_ms, end_ms], ...]`` (a pause in the frames longer than
    :data:`SPAN_GAP_MS` splits a span): a share or stage line is not always on."""

    @property
    def duration_ms(self) -> int:
        return max(0, self.end_ms - self.start_ms)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if out.get("spans") is None:
            out.pop("spans", None)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_name(seq: int, suffix: str = SEGMENT_SUFFIX) -> str:
    return f"seg-{seq:06d}{suffix}"


class _GuardedFile:
    """The segment's file as the muxer sees it: remembers a write error.

    PyAV's I/O callbacks turn a Python exception into an FFmpeg error code that the
    muxer may ignore, so the first error is kept here and raised by the segment.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        try:
            return self.raw.write(data)
        except BaseException as exc:
            self.error = exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def flush(self) -> None:
        self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class SegmentFile:
    """One WebM file being written by the writer thread."""

    def __init__(self, directory: Path, seq: int, size: tuple[int, int] | None,
                 opener: Opener, part_suffix: str = PART_SUFFIX) -> None:
        self.seq = seq
        self.part = directory / segment_name(seq, part_suffix)
        self.final = directory / segment_name(seq)
        self.size = size
        self.file = _GuardedFile(opener(self.part))
        try:
            self.container = av.open(self.file, "w", format="webm")
            self.vstream = None
            if size is not None:
                self.vstream = self.container.add_mux_stream("vp8", width=size[0],
                                                             height=size[1])
                self.vstream.time_base = MS
            # an encoder stream only so the muxer writes a proper OpusHead; never encodes
            self.astream = self.container.add_stream("libopus", rate=48000, layout="stereo")
            self.astream.time_base = MS
        except BaseException:
            self.file.close()
            raise
        self.start_ms: int | None = None
        self.end_ms = 0
        self.video_frames = 0
        self.audio_packets = 0
        self.last_video_ms = 0
        self.spans: list[list[int]] = []
        self.opened_at = time.monotonic()

    @property
    def has_video(self) -> bool:
        return self.vstream is not None

    def age_ms(self, ms: int) -> int:
        return 0 if self.start_ms is None else ms - self.start_ms

    def write(self, kind: str, data: bytes, ms: int, keyframe: bool, duration_ms: int) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = ms
        packet.time_base = MS
        if kind == "video":
            packet.stream = self.vstream
            packet.is_keyframe = keyframe
            self.video_frames += 1
            self.last_video_ms = ms
            if self.spans and ms - self.spans[-1][1] <= SPAN_GAP_MS:
                self.spans[-1][1] = ms + 1
            else:
                self.spans.append([ms, ms + 1])
        else:
            packet.stream = self.astream
            packet.duration = duration_ms
            self.audio_packets += 1
        self.container.mux(packet)
        self.file.check()
        if self.start_ms is None or ms < self.start_ms:
            self.start_ms = ms
        self.end_ms = max(self.end_ms, ms + duration_ms)

    def finish(self, fsync: bool) -> SegmentInfo:
        self.container.close()
        self.file.check()
        self.file.flush()
        if fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.part, self.final)
        if fsync:
            fsync_dir(self.final.parent)
        return SegmentInfo(
            seq=self.seq, file=self.final.name, start_ms=self.start_ms or 0,
            end_ms=self.end_ms, bytes=self.final.stat().st_size,
            width=self.size[0] if self.size else 0, height=self.size[1] if self.size else 0,
            video_frames=self.video_frames, audio_packets=self.audio_packets,
            spans=self.spans or None,
        )

    def abandon(self) -> None:
        for close in (self.container.close, self.file.close):
            try:
                close()
            except Exception:  # noqa: BLE001 - already failing: free what can be freed
                pass
        try:
            self.part.unlink()
        except OSError:
            pass


def default_opener(path: Path) -> IO[bytes]:
    return open(path, "wb")  # noqa: SIM115 - closed by SegmentFile


def append_index(directory: Path, info: SegmentInfo, fsync: bool = True) -> None:
    """Append one line to ``index.jsonl`` with a single write, then fsync."""
    line = (json.dumps(info.to_json(), separators=(",", ":")) + "\n").encode()
    fd = os.open(directory / INDEX_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn last line (power loss): never glue onto it
        os.write(fd, line)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_index(directory: Path) -> list[SegmentInfo]:
    """The complete segments an index names; a torn last line and missing files are skipped."""
    path = directory / INDEX_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out: dict[int, SegmentInfo] = {}
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            info = SegmentInfo.from_json(json.loads(line))
        except (ValueError, TypeError):
            continue
        seg = directory / SEGMENT_DIR / info.file
        if info.file != segment_name(info.seq) or not seg.is_file():
            continue
        if seg.stat().st_size != info.bytes:
            continue
        out[info.seq] = info
    return [out[k] for k in sorted(out)]

