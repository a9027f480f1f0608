"""The classroom on stage: its video decoded once and encoded once per tier for every
subscriber's stage video line, its Opus forwarded as received.

The stage keeps one :class:`~.feed.VideoFeed` for the lesson's whole life: calling another
classroom on stage changes the source feeding it (a new decoder, a forced keyframe from
every rendition, the output timeline moved on), so subscribers keep their stage RTP
streams and see the new classroom at the next keyframe. Tiers are no larger than the
uplink: a 360p uplink is never encoded at 720p (a subscriber on ``high`` gets ``mid``).

The stage classroom does not hear itself: a subscriber's stage audio line is skipped when
its session (the relay peer id before the last ``/``, see ``relay_peer_id``) is the stage
uplink's session.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import metrics
from .feed import VideoFeed
from .packets import AUDIO_CLOCK, AUDIO_TIME_BASE, PacketMeta, Timeline, make_packet
from .tracks import Sink, fan_out

if TYPE_CHECKING:
    from .config import RelayConfig
    from .outline import OutLine
    from .uplink import Uplink

logger = logging.getLogger(__name__)

_SAMPLES = 5000
"""Forward-latency samples kept per kind for ``stats()``."""
_DEFAULT_SIZE = (640, 360)
"""Assumed uplink size before its first keyframe (the classroom page's default)."""


def session_of(peer_id: str) -> str:
    """The signaling session a relay peer id belongs to (``relay_peer_id(session, purpose)``)."""
    return peer_id.rsplit("/", 1)[0]


class StageAudio:
    """The stage classroom's Opus packets, as received, to every stage audio line (except
    the stage classroom's own) and every grid's audio line."""

    def __init__(self) -> None:
        self._sinks: dict[Sink, str | None] = {}
        self._timeline = Timeline(AUDIO_CLOCK)
        self.exclude: str | None = None
        """Session whose lines get nothing (the classroom on stage)."""
        self.packets = 0

    def attach(self, sink: Sink, session: str | None) -> None:
        self._sinks[sink] = session

    def detach(self, sink: Sink) -> None:
        self._sinks.pop(sink, None)

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def forward(self, source: object, data: bytes, timestamp: int, ingress: float) -> None:
        pts = self._timeline.map(source, timestamp)
        self.packets += 1
        exclude = self.exclude
        sinks = [s for s, session in self._sinks.items() if session is None or session != exclude]
        if not sinks:
            return
        meta = PacketMeta([data], pts & 0xFFFFFFFF, True, ingress)
        meta.fanout = time.monotonic()
        fan_out(sinks, make_packet(data, pts, AUDIO_TIME_BASE, meta))

    def close(self) -> None:
        self._sinks.clear()


class StageVideoLine:
    """A subscriber's stage video line as a rendition sink: notes the first frame of a new
    stage classroom written to it (the switch time)."""

    def __init__(self, stage: Stage, line: OutLine) -> None:
        self.stage = stage
        self.line = line
        self.tier: str | None = None
        """The stage tier it is attached to (None: not attached)."""

    def push(self, packet: object) -> None:
        line = self.line
        before = line.sent
        line.sink.push(packet)
        stage = self.stage
        if stage.switch_at is not None and line.sent != before \
                and packet.opaque.ingress >= stage.switch_at:  # type: ignore[attr-defined]
            stage.first_frame_sent()

    def restart(self) -> None:
        self.line.restart()


class Stage:
    """A lesson's stage: which uplink is on it, its video feed and its audio fan-out.

    The lesson says who is on stage (:meth:`set`, with that uplink if it is connected) and
    binds the uplink when it connects or leaves (:meth:`bind`); ``on_change()`` tells the
    lesson the stage got or lost its uplink (what each subscriber's link carries changed).
    """

    def __init__(self, config: RelayConfig, *,
                 on_change: Callable[[], None] | None = None) -> None:
        self.config = config
        self.ladder = config.ladder
        self._on_change = on_change
        self._feed: VideoFeed | None = None
        self.audio = StageAudio()
        self.peer_id: str | None = None
        self.uplink: Uplink | None = None
        self._waiting_key = True
        self._size = _DEFAULT_SIZE
        self._lines: dict[StageVideoLine, str] = {}
        """Attached stage video lines -> the subscriber's tier."""
        self.switches = 0
        self.switch_at: float | None = None
        """When the current stage was set, until its first frame reached a subscriber."""
        self.switch_ms: list[float] = []
        """set_stage -> first frame of the new classroom written to a subscriber, per switch."""
        self.video_latency: deque[float] = deque(maxlen=_SAMPLES)
        self.audio_latency: deque[float] = deque(maxlen=_SAMPLES)
        self.frames_in = 0
        self.remote = False
        """An edge's stage: made at the lesson's origin, its lines pulled from there (a
        local uplink is never decoded here, it goes to the origin instead)."""
        self._remote_live = False

    @property
    def size(self) -> tuple[int, int]:
        """The stage's picture size (its uplink's, or the origin's for an edge)."""
        return self._size

    @property
    def live(self) -> bool:
        """The stage has a classroom's media now (here, or at the origin for an edge)."""
        return self._remote_live if self.remote else self.uplink is not None

    def set_remote(self, remote: bool, local: Uplink | None = None) -> None:
        """This node became an edge of the lesson (True) or its origin again (False, with
        the stage's uplink if it is here)."""
        if remote == self.remote:
            return
        was = self.live
        self.bind(None)
        self.remote = remote
        self._remote_live = False
        if not remote and self.peer_id is not None:
            self.bind(local)
        if self.live != was and self._on_change is not None:
            self._on_change()

    def set_remote_state(self, live: bool, size: tuple[int, int] | None) -> None:
        """An edge's stage as the origin reports it: live or not, and its size."""
        if not self.remote:
            return
        if size:
            self._resize(size)
        if live != self._remote_live:
            self._remote_live = live
            if self._on_change is not None:
                self._on_change()

    @property
    def feed_if_made(self) -> VideoFeed | None:
        """The stage's feed, or None before anything asked for it (nothing to read)."""
        return self._feed

    @property
    def feed(self) -> VideoFeed:
        if self._feed is None:
            self._feed = VideoFeed(self.config, always_top=False)
        return self._feed

    # ---- who is on stage (event loop) ------------------------------------------------------
    def set(self, peer_id: str | None, uplink: Uplink | None = None) -> None:
        """Put the uplink ``peer_id`` on stage (``uplink``: it, when connected; else it
        goes on stage when it connects), or clear it."""
        if peer_id == self.peer_id:
            return
        self.peer_id = peer_id
        self.switches += 1
        metrics.STAGE_SWITCHES.inc()
        self.switch_at = time.monotonic() if peer_id else None
        self.audio.exclude = session_of(peer_id) if peer_id else None
        self.bind(uplink if peer_id else None)

    def bind(self, uplink: Uplink | None) -> None:
        """The stage's uplink connected (again) or left (an edge's stage binds none)."""
        if self.remote:
            uplink = None
        old = self.uplink
        if old is not None and old.stage is self:
            old.stage = None
        self.uplink = uplink
        self._waiting_key = True
        if not self.remote and (old is None) != (uplink is None) and self._on_change is not None:
            self._on_change()  # the stage's lines now count (or no longer)
        if uplink is not None:
            uplink.stage = self
            uplink.request_keyframe()
            self._resize(uplink.size or _DEFAULT_SIZE)

    def resync(self) -> None:
        """Frames of the stage uplink were skipped: decode again from its next keyframe."""
        self._waiting_key = True

    def first_frame_sent(self) -> None:
        if self.switch_at is None:
            return
        seconds = time.monotonic() - self.switch_at
        self.switch_at = None
        self.switch_ms.append(round(1000 * seconds, 1))
        metrics.STAGE_SWITCH_SECONDS.observe(seconds)

    # ---- media from the stage uplink (event loop) -----------------------------------------
    def offer_video(self, uplink: Uplink, codec_name: str, data: bytes, timestamp: int,
                    keyframe: bool, now: float) -> None:
        if uplink is not self.uplink:
            return
        if self._waiting_key:  # a new decoder needs a keyframe first (requested on bind)
            if not keyframe:
                return
            self._waiting_key = False
        if keyframe and uplink.size and uplink.size != self._size:
            self._resize(uplink.size)
        self.frames_in += 1
        self.feed.source.offer_encoded(codec_name, data, now, uplink.source, timestamp,
                                       uplink.request_keyframe)

    def offer_audio(self, uplink: Uplink, data: bytes, timestamp: int, now: float) -> None:
        if uplink is self.uplink:
            self.audio.forward(uplink.source, data, timestamp, now)

    # ---- subscribers' stage video lines ----------------------------------------------------
    def tier_for(self, tier: str) -> str | None:
        """The stage tier for a subscriber on ``tier``: no larger than the uplink."""
        ladder = self.ladder
        if not ladder.spec(tier).has_video:
            return None
        width, height = self._size
        fitting = next((t.name for t in ladder.tiers[:-1]
                        if t.width <= width and t.height <= height), ladder.lowest_video)
        return ladder.lower_of(tier, fitting)

    def attach_line(self, line: StageVideoLine, tier: str) -> None:
        """Send the stage to ``line`` at the subscriber's ``tier`` (moved on tier changes)."""
        self._lines[line] = tier
        self._place(line, tier, "join")

    def detach_line(self, line: StageVideoLine) -> None:
        self._lines.pop(line, None)
        if line.tier is not None:
            self.feed.detach(line, line.tier)
            line.tier = None

    def request_keyframe(self, line: StageVideoLine, reason: str) -> None:
        if self._feed is not None:
            self._feed.request_keyframe(line.tier, reason,
                                        getattr(line, "video_codec", "VP8"))

    def _place(self, line: StageVideoLine, tier: str, reason: str) -> None:
        line.tier = self.feed.move(line, line.tier, self.tier_for(tier), reason, line.restart)

    def _resize(self, size: tuple[int, int]) -> None:
        if size == self._size:
            return
        self._size = size
        for line, tier in list(self._lines.items()):
            self._place(line, tier, "switch")

    # ---- lifetime ------------------------------------------------------------------------
    async def close(self) -> None:
        self.bind(None)
        self._lines.clear()
        self.audio.close()
        if self._feed is not None:
            await self._feed.close()

    def stats(self) -> dict:
        from .outline import percentiles

        return {
            "peer_id": self.peer_id,
            "connected": self.live,
            "remote": self.remote,
            "switches": self.switches,
            "switch_ms": list(self.switch_ms),
            "pending_switch": self.switch_at is not None,
            "frames_in": self.frames_in,
            "size": list(self._size),
            "audio_packets": self.audio.packets,
            "video_forward": percentiles(self.video_latency),
            "audio_forward": percentiles(self.audio_latency),
            "renditions": self._feed.stats() if self._feed is not None else [],
        }
