"""A lesson inside the relay: its publisher (replaceable), rendition, audio and subscribers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .config import RelayConfig
from .feed import VideoFeed
from .node_load import NodeLoad
from .packets import AUDIO_CLOCK, AUDIO_TIME_BASE, PacketMeta, Timeline, make_packet
from .rendition import Rendition
from .stage import Stage
from .tracks import fan_out

if TYPE_CHECKING:
    from .grid import Grid
    from .publisher import Publisher
    from .subscriber import Subscriber
    from .tracks import Sink
    from .uplink import Uplink


class AudioFanout:
    """Forwards the publisher's Opus packets as received to every subscriber's audio sink."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._timeline = Timeline(AUDIO_CLOCK)
        self.packets = 0

    def attach(self, track: Sink) -> None:
        self._sinks.append(track)

    def detach(self, track: Sink) -> None:
        if track in self._sinks:
            self._sinks.remove(track)

    def forward(self, source: int, data: bytes, timestamp: int, ingress: float) -> None:
        pts = self._timeline.map(source, timestamp)
        self.packets += 1
        if not self._sinks:
            return
        meta = PacketMeta([data], pts & 0xFFFFFFFF, True, ingress)
        meta.fanout = time.monotonic()
        packet = make_packet(data, pts, AUDIO_TIME_BASE, meta)
        fan_out(self._sinks, packet)

    def close(self) -> None:
        self._sinks.clear()


class RelayLesson:
    """Holds one lesson's media objects; closing it closes all of them.

    The renditions and the subscribers belong to the lesson, not to the publisher, so a
    teacher who reconnects replaces only the publisher: classrooms keep their connections
    and get a keyframe from the new source. ``rendition`` is the top tier (always encoded
    while media flows; the recorder attaches to it); lower tiers are created on first use
    and fed only while a subscriber is on them.

    Two-way lesson: ``uplinks`` (classrooms' cameras, in join order), ``grids`` (the
    teacher's grid connections), ``stage`` (the classroom on stage) and ``share`` (the
    teacher's second video, a feed of its own; ``share_active`` while the teacher's
    publish carries it).
    """

    def __init__(self, lesson_id: str, config: RelayConfig) -> None:
        self.lesson_id = lesson_id
        self.config = config
        self.node_load = NodeLoad(config.busy_lag, config.busy_hold)
        """The node's (shared by every lesson when a Relay made this lesson)."""
        self.ladder = config.ladder
        self.publisher: Publisher | None = None
        self.camera = VideoFeed(config, always_top=True)
        self.source = self.camera.source
        self.renditions: dict[str, Rendition] = self.camera.renditions
        self.rendition = self.renditions[self.ladder.top]
        self.audio = AudioFanout()
        self.uplinks: dict[str, Uplink] = {}
        self.grids: dict[str, Grid] = {}
        self.stage = Stage(self)
        self._share: VideoFeed | None = None
        self.share_active = False
        self.has_share_line = False
        """The teacher's publish has a second video m-line (the share's)."""
        self.share_on: bool | None = None
        """The teacher's last ``share {on}`` (Relay.set_share); None before any: then the
        m-line alone decides (a page that publishes the share's m-line only while sharing)."""
        self.subscribers: dict[str, Subscriber] = {}
        self.caps: dict[str, int] = {}
        """School -> bit/s shared by that school's subscribers in this lesson."""
        self.closed = False
        self._sources = 0

    def next_source(self) -> int:
        self._sources += 1
        return self._sources

    # ---- the ladder (event loop) -------------------------------------------------------
    def rendition_for(self, tier: str) -> Rendition | None:
        """The tier's rendition (created on first use); None for the audio-only tier."""
        return self.camera.rendition_for(tier)


    def tiers_in_use(self) -> list[str]:
        return self.camera.tiers_in_use()

    @property
    def share(self) -> VideoFeed:
        """The teacher's share (screen/slides), created on first use."""
        if self._share is None:
            self._share = VideoFeed(self.config, always_top=False)
        return self._share

    def set_share_line(self, present: bool) -> None:
        """The teacher (re)published, with or without the share's m-line."""
        self.has_share_line = present
        self._update_share()

    def set_share_on(self, on: bool) -> None:
        """The teacher started or stopped sharing on the m-line its publish keeps (the page
        swaps the track in place: no re-publish, the camera does not blink)."""
        self.share_on = on
        self._update_share()

    def _update_share(self) -> None:
        self.set_share_active(self.has_share_line and self.share_on is not False)

    def set_share_active(self, active: bool) -> None:
        """A share is (or no longer is) sent: re-split every subscriber's tier between
        share and camera."""
        if active == self.share_active:
            return
        self.share_active = active
        for subscriber in list(self.subscribers.values()):
            subscriber.route("share")
        if active and self.publisher is not None:
            # frames that came before the share was on were not decoded: start from a
            # keyframe now (a still screen may not send another for seconds)
            self.publisher.request_share_keyframe()

    # ---- uplinks (event loop) ------------------------------------------------------------
    def add_uplink(self, uplink: Uplink) -> None:
        self.uplinks[uplink.peer_id] = uplink
        if self.stage.peer_id == uplink.peer_id:
            self.stage.bind(uplink)
        for grid in list(self.grids.values()):
            grid.assign()

    def remove_uplink(self, uplink: Uplink) -> None:
        if self.uplinks.get(uplink.peer_id) is not uplink:
            return
        del self.uplinks[uplink.peer_id]
        for slot in list(uplink.slots):
            slot.assign(None)
        if self.stage.uplink is uplink:
            self.stage.bind(None)
        for grid in list(self.grids.values()):
            grid.assign()

    def cap_share(self, school: str | None) -> int | None:
        """The school's cap split evenly among its subscribers in this lesson."""
        if not school or school not in self.caps:
            return None
        count = sum(1 for s in self.subscribers.values() if s.school == school)
        return self.caps[school] // max(1, count)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            await publisher.close()
        subscribers = list(self.subscribers.values())
        self.subscribers.clear()
        for subscriber in subscribers:
            await subscriber.close()
        for peer in [*self.uplinks.values(), *self.grids.values()]:
            await peer.close()
        self.uplinks.clear()
        self.grids.clear()
        await self.camera.close()
        await self.stage.close()
        if self._share is not None:
            await self._share.close()
        self.audio.close()

    def stats(self) -> dict:
        return {
            "lesson_id": self.lesson_id,
            "publisher": self.publisher.stats() if self.publisher else None,
            "renditions": [r.stats() for name in self.ladder.names
                           if (r := self.renditions.get(name)) is not None],
            "tiers_in_use": self.tiers_in_use(),
            "h264": self.camera.h264_stats(),
            "caps": dict(self.caps),
            "audio_packets": self.audio.packets,
            "subscribers": {pid: s.stats() for pid, s in self.subscribers.items()},
            "uplinks": [u.stats() for u in self.uplinks.values()],
            "grids": {pid: g.stats() for pid, g in self.grids.items()},
            "stage": self.stage.stats(),
            "share": {"active": self.share_active,
                      "renditions": self._share.stats() if self._share else []},
        }
