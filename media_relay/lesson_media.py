"""A lesson's media feeds: what its peers read from and write to, without the lesson.

:class:`LessonMedia` holds the teacher's camera (a :class:`~.feed.VideoFeed`, always
encoding its top tier), the teacher's share (a feed of its own, created on first use), the
teacher's audio (:class:`AudioFanout`) and the stage (:class:`~.stage.Stage`). A
:class:`~.lesson.RelayLesson` owns one and hands it to its children: a publisher writes the
teacher's frames into it, a subscriber moves its lines between its feeds. ``share_active``
and ``on_air`` are state the lesson pushes (its children read them, never set them).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import capture_clock
from .config import RelayConfig
from .feed import VideoFeed
from .packets import AUDIO_CLOCK, AUDIO_TIME_BASE, PacketMeta, Timeline, make_packet
from .stage import Stage
from .tracks import Sink, add_sink, fan_out


class AudioFanout:
    """Forwards the publisher's Opus packets as received to every subscriber's audio sink."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._timeline = Timeline(AUDIO_CLOCK)
        self.packets = 0
        self.capture = capture_clock.CaptureMap()  # output timestamp -> capture (latency)

    def attach(self, track: Sink) -> None:
        add_sink(self._sinks, track)

    def detach(self, track: Sink) -> None:
        if track in self._sinks:
            self._sinks.remove(track)

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def forward(self, source: object, data: bytes, timestamp: int, ingress: float) -> None:
        pts = self._timeline.map(source, timestamp)
        self.packets += 1
        self.capture.note(pts, capture_clock.delivering)
        if not self._sinks:
            return
        meta = PacketMeta([data], pts & 0xFFFFFFFF, True, ingress)
        meta.fanout = time.monotonic()
        packet = make_packet(data, pts, AUDIO_TIME_BASE, meta)
        fan_out(self._sinks, packet)

    def close(self) -> None:
        self._sinks.clear()


class LessonMedia:
    """The feeds of one lesson: camera, share, audio, stage; closing it closes them.

    ``on_stage_change()`` is called when the stage gets or loses its uplink (what each
    subscriber's link carries changed: the lesson re-budgets its subscribers).
    """

    def __init__(self, config: RelayConfig, *,
                 on_stage_change: Callable[[], None] | None = None) -> None:
        self.config = config
        self.ladder = config.ladder
        self.camera = VideoFeed(config, always_top=True)
        self.audio = AudioFanout()
        self.stage = Stage(config, on_change=on_stage_change)
        self._share: VideoFeed | None = None
        self.share_active = False
        """A share is sent now (pushed by the lesson: its m-line is there and not off)."""
        self.on_air = True
        """Classrooms receive media now (pushed by the lesson: the lesson is live, or the
        relay does not gate). Off air a subscriber is attached to no feed at all."""

    @property
    def share(self) -> VideoFeed:
        """The teacher's share (screen/slides), created on first use."""
        if self._share is None:
            self._share = VideoFeed(self.config, always_top=False)
        return self._share

    def video_feed(self, kind: str, create: bool = True) -> VideoFeed | None:
        """The ``camera``, ``share`` or ``stage`` feed; ``create=False``: None for a feed
        nothing has asked for yet (a reader need not start one)."""
        if kind == "camera":
            return self.camera
        if kind == "share":
            return self.share if create else self._share
        if kind == "stage":
            return self.stage.feed if create else self.stage.feed_if_made
        raise ValueError(f"not a video feed: {kind!r}")

    # ---- the recorder's share and stage lines (Relay.attach_sink does camera and audio) ---
    def attach_track_sink(self, sink: Sink, kind: str) -> None:
        """Attach a recorder sink to the share (``"share"``), the stage video (``"stage"``)
        or the stage audio (``"stage-audio"``): the packets every classroom gets, as
        encoded once (a tier in use when there is one; the stage at most the uplink's size)."""
        self.detach_track_sink(sink, kind)
        if kind == "share":
            feed = self.share
            tier = next(iter(feed.tiers_in_use()), self.ladder.top)
            sink.tier = tier  # type: ignore[attr-defined]
            feed.attach(sink, tier)
        elif kind == "stage":
            sink.tier = None  # type: ignore[attr-defined]
            self.stage.attach_line(sink, self.ladder.top)  # type: ignore[arg-type]
        elif kind == "stage-audio":
            self.stage.audio.attach(sink, None)
        else:
            raise ValueError(f"track kind must be share, stage or stage-audio, not {kind!r}")

    def detach_track_sink(self, sink: Sink, kind: str) -> None:
        """Undo :meth:`attach_track_sink` (no-op when it is not attached)."""
        tier = getattr(sink, "tier", None)
        if kind == "share" and self._share is not None and tier is not None:
            self._share.detach(sink, tier)
            sink.tier = None  # type: ignore[attr-defined]
        elif kind == "stage":
            self.stage.detach_line(sink)  # type: ignore[arg-type]
        elif kind == "stage-audio":
            self.stage.audio.detach(sink)

    def share_stats(self) -> list[dict]:
        return self._share.stats() if self._share is not None else []

    async def close(self) -> None:
        await self.camera.close()
        await self.stage.close()
        if self._share is not None:
            await self._share.close()
        self.audio.close()
