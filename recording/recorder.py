"""The recorder: one more subscriber of a lesson, writing its encoded packets to disk.

A :class:`Recorder` hands out two sinks (``recorder.video`` and ``recorder.audio``, each
with ``.kind`` and ``push(packet)``) that the relay attaches like any subscriber's track.
Packets are never re-encoded and never changed: ``push`` only queues a reference, and the
writer thread muxes a *copy* of the bytes with its own timestamps.

On disk (one folder per recording)::

    segments/seg-000001.webm     VP8 + Opus, starts at a video keyframe, ~2 s, self-contained
    segments/seg-000002.part     the segment being written (renamed when it is complete)
    index.jsonl                  one JSON line per complete segment, appended and fsync'd

A segment is closed, fsync'd and renamed before its index line is appended (one
``write`` + ``fsync``), so a ``kill -9`` loses at most the segment being written, and
even that is salvaged at restart from the bytes the OS already holds
(:func:`recover_segments`). Timestamps in every segment are milliseconds on the
recording's own timeline (from the first packet, pauses cut out), so the segments of one
recording concatenate without any adjustment.

Faults: a write error (a full disk, an I/O error) abandons the current segment, counts
``classroom_recording_errors_total{reason}``, and retries after ``retry_seconds`` at the
next keyframe; the live lesson never waits for the disk: when the writer falls behind,
packets are dropped (counted) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import errno
import fractions
import json
import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import av

from . import metrics

logger = logging.getLogger(__name__)

MS = fractions.Fraction(1, 1000)
VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
SEGMENT_DIR = "segments"
INDEX_FILE = "index.jsonl"
SEGMENT_SUFFIX = ".webm"
PART_SUFFIX = ".part"

Opener = Callable[[Path], IO[bytes]]
"""Opens a segment file for writing (tests inject faults here)."""


@dataclass
class RecorderConfig:
    segment_seconds: float = 2.0
    """A segment is cut at the first video keyframe this long after its start."""
    queue_limit: int = 1500
    """Packets waiting for the writer (~15 s of 30 fps video + audio); over it, drop."""
    retry_seconds: float = 5.0
    """After a write error, no new segment is tried for this long."""
    drift_limit: float = 1.0
    """A media timestamp this far from the arrival clock (source change) re-anchors."""
    audio_only_after: float = 3.0
    """Without video for this long, segments are written with audio only."""
    fsync: bool = True


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

    @property
    def duration_ms(self) -> int:
        return max(0, self.end_ms - self.start_ms)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

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


class RecorderSink:
    """What the relay attaches: ``kind`` and ``push(packet)``, like a subscriber's track."""

    def __init__(self, recorder: Recorder, kind: str) -> None:
        self.kind = kind
        self._recorder = recorder

    def push(self, packet: av.Packet) -> None:
        self._recorder.enqueue(self.kind, packet)


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


class _Segment:
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


def _default_opener(path: Path) -> IO[bytes]:
    return open(path, "wb")  # noqa: SIM115 - closed by _Segment


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


class Recorder:
    """Writes one lesson's packets into a folder of self-contained WebM segments."""

    def __init__(self, directory: Path, *, config: RecorderConfig | None = None,
                 opener: Opener | None = None, first_seq: int = 1,
                 time_offset_ms: int = 0) -> None:
        self.directory = Path(directory)
        self.config = config or RecorderConfig()
        self._opener = opener or _default_opener
        (self.directory / SEGMENT_DIR).mkdir(parents=True, exist_ok=True)
        self.video = RecorderSink(self, "video")
        self.audio = RecorderSink(self, "audio")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._paused = False
        self._closed = False
        self._overflowing = False
        self.paused_seconds = 0.0
        # written by the writer thread, read anywhere
        self.segments: list[SegmentInfo] = []
        self.bytes_written = 0
        self.errors = 0
        self.last_error: str | None = None
        self.dropped = 0
        self.packets = 0
        self.started_at = time.time()
        self._writer = _Writer(self, first_seq, time_offset_ms)
        self._thread = threading.Thread(target=self._writer.run, name="recorder", daemon=True)
        self._thread.start()
        metrics.ACTIVE.inc()

    # ---- event loop side ---------------------------------------------------------------
    def enqueue(self, kind: str, packet: av.Packet, arrival: float | None = None) -> None:
        """Called by the relay's fan-out: O(1), never blocks, never touches the packet.

        ``arrival`` (``time.monotonic()`` by default) anchors the media timestamps to the
        recording's clock; tests replaying media faster than real time pass their own.
        """
        if self._closed or self._paused:
            return
        if self._queue.qsize() >= self.config.queue_limit:
            self.dropped += 1
            metrics.DROPPED.inc()
            if not self._overflowing:
                self._overflowing = True
                metrics.ERRORS.labels(reason="overflow").inc()
                self._queue.put(("gap", time.monotonic()))
            return
        self._overflowing = False
        self._queue.put((kind, packet, time.monotonic() if arrival is None else arrival))

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self, at: float | None = None) -> None:
        """Stop recording (the current segment is closed); ``at`` as in :meth:`enqueue`."""
        if not self._paused and not self._closed:
            self._paused = True
            self._queue.put(("pause", time.monotonic() if at is None else at))

    def resume(self, at: float | None = None) -> None:
        """Record again from the next keyframe; the paused time is cut out of the timeline."""
        if self._paused and not self._closed:
            self._paused = False
            self._queue.put(("resume", time.monotonic() if at is None else at))

    @property
    def duration_ms(self) -> int:
        segs = self.segments
        return sum(s.duration_ms for s in segs)

    async def stop(self) -> list[SegmentInfo]:
        """Finish the current segment and stop the writer (in an executor)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            metrics.ACTIVE.dec()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        return list(self.segments)

    def stats(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "segments": len(self.segments),
            "bytes": self.bytes_written,
            "duration_ms": self.duration_ms,
            "packets": self.packets,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
            "paused": self._paused,
            "queued": self._queue.qsize(),
        }


class _Writer:
    """The writer thread's state: timestamps, the open segment, faults."""

    def __init__(self, recorder: Recorder, first_seq: int, time_offset_ms: int) -> None:
        self.rec = recorder
        self.cfg = recorder.config
        self.dir = recorder.directory / SEGMENT_DIR
        self.seq = first_seq
        self.segment: _Segment | None = None
        self.origin: float | None = None  # monotonic of the first packet
        self.offset_ms = time_offset_ms  # recording continues after a recovered part
        self.pause_total = 0.0
        self.paused_at: float | None = None
        self.anchors: dict[str, tuple[int, float]] = {}
        self.last_ms: dict[str, int] = {"video": -1, "audio": -1}
        self.need_keyframe = True
        self.failed_until = 0.0
        self.last_arrival = 0.0
        self.last_video_arrival = -1e9
        self.size: tuple[int, int] | None = None

    def run(self) -> None:
        q = self.rec._queue
        while True:
            item = q.get()
            if item is None:
                break
            try:
                kind = item[0]
                if kind == "pause":
                    self.paused_at = item[1]
                    self._finish()
                    self.anchors.clear()
                elif kind == "resume":
                    if self.paused_at is not None:
                        self.pause_total += item[1] - self.paused_at
                        self.rec.paused_seconds = self.pause_total
                    self.paused_at = None
                    self.need_keyframe = True
                elif kind == "gap":
                    self._finish()
                    self.need_keyframe = True
                else:
                    self._packet(kind, item[1], item[2])
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any fault
                self._fault(exc)
        self._finish()

    # ---- timestamps ----------------------------------------------------------------------
    def _out_seconds(self, arrival: float) -> float:
        assert self.origin is not None
        return arrival - self.origin - self.pause_total

    def _time_ms(self, kind: str, pts: int, arrival: float) -> int:
        clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        by_arrival = self._out_seconds(arrival)
        anchor = self.anchors.get(kind)
        t = None
        if anchor is not None:
            t = anchor[1] + (pts - anchor[0]) / clock
            if pts < anchor[0] or abs(t - by_arrival) > self.cfg.drift_limit:
                t = None  # a new source (teacher reconnected) or a clock jump
        if t is None:
            self.anchors[kind] = (pts, by_arrival)
            t = by_arrival
        ms = int(round(t * 1000)) + self.offset_ms
        ms = max(ms, self.last_ms[kind] + 1)
        self.last_ms[kind] = ms
        return ms

    # ---- packets --------------------------------------------------------------------------
    def _packet(self, kind: str, packet: av.Packet, arrival: float) -> None:
        rec = self.rec
        if self.origin is None:
            self.origin = arrival
        self.last_arrival = arrival
        if kind == "video":
            self.last_video_arrival = arrival
        if arrival < self.failed_until:
            rec.dropped += 1
            metrics.DROPPED.inc()
            return
        data = bytes(packet)  # a copy: the shared packet is never handed to the muxer
        pts = packet.pts or 0
        if kind == "video":
            keyframe = bool(packet.opaque.keyframe) if packet.opaque is not None else (
                packet.is_keyframe)
            size = vp8_size(data) if keyframe else None
            if keyframe and size is None:
                keyframe = False
            if self.need_keyframe and not keyframe:
                rec.dropped += 1
                metrics.DROPPED.inc()
                return
            ms = self._time_ms(kind, pts, arrival)
            seg = self.segment
            if keyframe:
                cut = (seg is None or not seg.has_video or size != seg.size
                       or self.need_keyframe
                       or seg.age_ms(ms) >= self.cfg.segment_seconds * 1000)
                if cut:
                    self._finish()
                    if arrival < self.failed_until:  # closing the last one failed
                        rec.dropped += 1
                        metrics.DROPPED.inc()
                        return
                    self._open(size)
                self.need_keyframe = False
            seg = self.segment
            if seg is None or not seg.has_video:
                rec.dropped += 1
                metrics.DROPPED.inc()
                return
            seg.write("video", data, ms, keyframe, 0)
        else:
            ms = self._time_ms(kind, pts, arrival)
            seg = self.segment
            video_gone = arrival - self.last_video_arrival > self.cfg.audio_only_after
            waited = arrival - self.origin > self.cfg.audio_only_after
            if seg is None or (seg.has_video and video_gone):
                if not (video_gone and waited):
                    rec.dropped += 1
                    metrics.DROPPED.inc()
                    return
                self._finish()
                if arrival < self.failed_until:
                    return
                self._open(None)
            elif not seg.has_video and seg.age_ms(ms) >= self.cfg.segment_seconds * 1000:
                self._finish()
                if arrival < self.failed_until:
                    return
                self._open(None)
            assert self.segment is not None
            self.segment.write("audio", data, ms, True, 20)
        rec.packets += 1

    def _open(self, size: tuple[int, int] | None) -> None:
        self.segment = _Segment(self.dir, self.seq, size, self.rec._opener)
        self.seq += 1

    def _finish(self) -> None:
        seg, self.segment = self.segment, None
        if seg is None:
            return
        if seg.video_frames == 0 and seg.audio_packets == 0:
            seg.abandon()
            return
        try:
            info = seg.finish(self.cfg.fsync)
            append_index(self.rec.directory, info, self.cfg.fsync)
        except Exception as exc:  # noqa: BLE001
            seg.abandon()
            self._fault(exc, segment_done=True)
            return
        self.rec.segments.append(info)
        self.rec.bytes_written += info.bytes
        metrics.BYTES.inc(info.bytes)
        metrics.SEGMENTS.inc()

    def _fault(self, exc: BaseException, segment_done: bool = False) -> None:
        rec = self.rec
        if not segment_done and self.segment is not None:
            self.segment.abandon()
            self.segment = None
        reason = "write"
        err = getattr(exc, "errno", None)
        if err in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
            reason = "disk_full"
        rec.errors += 1
        rec.last_error = f"{reason}: {exc}"
        metrics.ERRORS.labels(reason=reason).inc()
        self.need_keyframe = True
        self.failed_until = self.last_arrival + self.cfg.retry_seconds
        logger.warning("recording write failed", extra={"dir": str(rec.directory),
                                                         "reason": reason, "error": str(exc)})


# ---- recovery ------------------------------------------------------------------------------
def probe_segment(path: Path) -> SegmentInfo | None:
    """Read a segment file completely; None when it holds no decodable packet."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError):
        return None
    start = end = None
    frames = packets = 0
    width = height = 0
    try:
        with container:
            for stream in container.streams.video[:1]:
                width, height = stream.codec_context.width, stream.codec_context.height
            try:
                for packet in container.demux():
                    if packet.pts is None or packet.size == 0:
                        continue
                    ms = int(packet.pts * packet.time_base * 1000)
                    if packet.stream.type == "video":
                        frames += 1
                    else:
                        packets += 1
                        ms_end = ms + 20
                        end = ms_end if end is None else max(end, ms_end)
                    start = ms if start is None else min(start, ms)
                    end = ms if end is None else max(end, ms)
            except (av.FFmpegError, OSError, ValueError):
                pass
    except (av.FFmpegError, OSError, ValueError):
        return None
    if start is None or end is None:
        return None
    seq = int(path.name[4:10]) if path.name[4:10].isdigit() else 0
    return SegmentInfo(seq=seq, file=segment_name(seq), start_ms=start, end_ms=end,
                       bytes=path.stat().st_size, width=width, height=height,
                       video_frames=frames, audio_packets=packets)


def _salvage(part: Path, fsync: bool) -> SegmentInfo | None:
    """Remux the readable packets of a segment cut short by a crash into a complete one."""
    seq = int(part.name[4:10]) if part.name[4:10].isdigit() else 0
    try:
        source = av.open(str(part))
    except (av.FFmpegError, OSError, ValueError):
        return None
    packets: list[tuple[str, bytes, int, bool]] = []
    size = None
    with source:
        if source.streams.video:
            ctx = source.streams.video[0].codec_context
            size = (ctx.width, ctx.height) if ctx.width and ctx.height else None
        try:
            for packet in source.demux():
                if packet.pts is None or packet.size == 0:
                    continue
                kind = packet.stream.type
                if kind not in ("video", "audio"):
                    continue
                ms = int(packet.pts * packet.time_base * 1000)
                packets.append((kind, bytes(packet), ms, bool(packet.is_keyframe)))
        except (av.FFmpegError, OSError, ValueError):
            pass  # the torn end: keep what came before it
    if not packets:
        return None
    try:
        segment = _Segment(part.parent, seq, size, _default_opener, ".salvage")
        for kind, data, ms, key in packets:
            if kind == "video" and not segment.has_video:
                continue
            segment.write(kind, data, ms, key, 0 if kind == "video" else 20)
        info = segment.finish(fsync)
    except Exception:  # noqa: BLE001
        logger.exception("salvage failed", extra={"file": str(part)})
        return None
    info.salvaged = True
    return info


def recover_segments(directory: Path, fsync: bool = True) -> list[SegmentInfo]:
    """Make a recording folder consistent after a crash and return its complete segments.

    Indexed segments are kept; complete segment files the index missed (killed between
    the rename and the append) are probed and indexed; the ``.part`` being written at the
    kill is salvaged into a complete segment (its readable packets) and removed.
    Segments that cannot be read at all are moved aside as ``*.corrupt``.
    """
    directory = Path(directory)
    segdir = directory / SEGMENT_DIR
    if not segdir.is_dir():
        return []
    known = {s.seq: s for s in read_index(directory)}
    for path in sorted(segdir.glob("seg-*" + SEGMENT_SUFFIX)):
        info = probe_segment(path)
        if info is None:
            path.rename(path.with_suffix(".corrupt"))
            known.pop(int(path.name[4:10]) if path.name[4:10].isdigit() else -1, None)
            metrics.ERRORS.labels(reason="recovery").inc()
            continue
        if info.seq not in known:
            append_index(directory, info, fsync)
            known[info.seq] = info
    for part in sorted(segdir.glob("seg-*" + PART_SUFFIX)):
        seq = int(part.name[4:10]) if part.name[4:10].isdigit() else -1
        if seq in known:
            part.unlink()
            continue
        info = _salvage(part, fsync)
        if info is not None:
            append_index(directory, info, fsync)
            known[info.seq] = info
        part.unlink()
    for stray in segdir.glob("*.salvage"):
        stray.unlink()
    return [known[k] for k in sorted(known)]
