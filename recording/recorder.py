"""The recorder: one more subscriber of a lesson, writing its encoded packets to disk.

A :class:`Recorder` hands out two sinks (``recorder.video`` and ``recorder.audio``, typed
:class:`media_relay.tracks.KindSink`: ``.kind`` and ``push(packet)``) that the relay
attaches like any subscriber's track (``Relay.attach_sink``); the recorder knows nothing
else of the relay, and nothing of signaling. Packets are never re-encoded and never
changed: ``push`` only queues a reference, and the writer thread muxes a *copy* of the
bytes with its own timestamps.

On disk (segments.py): one folder per recording, self-contained WebM segments of ~2 s and
an fsync'd index, so a ``kill -9`` loses at most the segment being written, and even that
is salvaged at restart from the bytes the OS already holds (recovery.py). Timestamps in
every segment are milliseconds on the recording's own timeline (from the first packet,
pauses cut out), so the segments of one recording concatenate without any adjustment.

Lines: the teacher's recorder (camera + voice) is the lesson's clock; the share and the
stage are recorders of their own (``line``, :data:`LINES`, in ``tracks/<line>/``) whose
timestamps are on its timeline (``clock``), so each line is a recording folder like any
other (same segments, salvage, chunks) and the replay keeps them in step (tracks.py).

Faults: a write error (a full disk, an I/O error) abandons the current segment, counts
``classroom_recording_errors_total{reason}``, and retries after ``retry_seconds`` at the
next keyframe; the live lesson never waits for the disk: when the writer falls behind,
packets are dropped (counted) rather than queued without bound.
"""


from __future__ import annotations

import asyncio
import errno
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from . import metrics
from .segments import (
    SEGMENT_DIR,
    Opener,
    SegmentFile,
    SegmentInfo,
    append_index,
    default_opener,
    vp8_size,
)

if TYPE_CHECKING:
    from media_relay.tracks import KindSink

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000


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



LINES = {"share": ("share",), "stage": ("stage", "stage-audio")}
"""The lines recorded beside the teacher (camera + voice), each its own folder of segments
(``tracks/<line>/``) on the same timeline, and the relay's sink kinds of each: the share's
video; the stage classroom's video and its Opus."""


class RecorderSink:
    """What the relay attaches: ``kind`` and ``push(packet)``, like a subscriber's track.

    ``line`` says which of the lesson's media it takes: ``"video"``/``"audio"`` (the
    teacher), or ``"share"``, ``"stage"``, ``"stage-audio"`` (:data:`LINES`)."""

    def __init__(self, recorder: Recorder, kind: str, line: str | None = None) -> None:
        self.kind = kind
        self.line = line or kind
        self.tier: str | None = None  # the relay notes the tier it attached a video line to
        self._recorder = recorder

    def restart(self) -> None:
        """The relay moved this line to another tier: it starts again at a keyframe (the
        writer cuts a segment at the next keyframe of another size by itself)."""

    def push(self, packet: av.Packet) -> None:
        self._recorder.enqueue(self.kind, packet)


class Recorder:
    """Writes one lesson's packets into a folder of self-contained WebM segments."""

    def __init__(self, directory: Path, *, config: RecorderConfig | None = None,
                 opener: Opener | None = None, first_seq: int = 1,
                 time_offset_ms: int = 0, line: str = "main",
                 clock: Recorder | None = None) -> None:
        """``line``: ``"main"`` (the teacher) or one of :data:`LINES`; ``clock``: the main
        recorder whose timeline a line's timestamps are on (its first packet is time 0)."""
        self.directory = Path(directory)
        self.line = line
        self.clock = clock
        self.config = config or RecorderConfig()
        self._opener = opener or default_opener
        (self.directory / SEGMENT_DIR).mkdir(parents=True, exist_ok=True)
        names = LINES.get(line, ("video", "audio"))
        self.video: KindSink = RecorderSink(self, "video", names[0])
        self.audio: KindSink | None = (RecorderSink(self, "audio", names[1])
                                       if len(names) > 1 else None)
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
        if clock is None:  # one recording, however many lines it has
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
    def sinks(self) -> tuple[KindSink, ...]:
        """``(video, audio)`` (the share: video only): what the relay attaches."""
        return (self.video,) if self.audio is None else (self.video, self.audio)

    @property
    def duration_ms(self) -> int:
        segs = self.segments
        return sum(s.duration_ms for s in segs)

    def timeline_ms(self) -> int:
        """Now on the recording's own timeline (pauses cut out): where a chapter event
        that happens now lands."""
        writer = self._writer
        if writer.origin is None:
            return writer.offset_ms
        paused = writer.pause_total
        if writer.paused_at is not None:
            paused += time.monotonic() - writer.paused_at
        return int((time.monotonic() - writer.origin - paused) * 1000) + writer.offset_ms

    async def stop(self) -> list[SegmentInfo]:
        """Finish the current segment and stop the writer (in an executor)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            if self.clock is None:
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
        self.segment: SegmentFile | None = None
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
            clock = rec.clock
            if clock is None:
                self.origin = arrival
            elif clock._writer.origin is None:  # the teacher's timeline has not begun
                rec.dropped += 1
                return
            else:
                self.origin = clock._writer.origin
                self.offset_ms = clock._writer.offset_ms
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
        self.segment = SegmentFile(self.dir, self.seq, size, self.rec._opener)
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
