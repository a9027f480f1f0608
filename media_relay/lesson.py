"""A lesson inside the relay: its publisher (replaceable), rendition, audio and subscribers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .config import RelayConfig
from .packets import AUDIO_CLOCK, AUDIO_TIME_BASE, PacketMeta, Timeline, make_packet
from .rendition import Rendition, VideoSource
from .tracks import fan_out

if TYPE_CHECKING:
    from .publisher import Publisher
    from .subscriber import Subscriber
    from .tracks import Sink


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
    """

    def __init__(self, lesson_id: str, config: RelayConfig) -> None:
        self.lesson_id = lesson_id
        self.config = config
        self.ladder = config.ladder
        self.publisher: Publisher | None = None
        self.source = VideoSource()
        self.rendition = Rendition(config, self.ladder.spec(self.ladder.top), self.source,
                                   top=True)
        self.renditions: dict[str, Rendition] = {self.ladder.top: self.rendition}
        self.source.targets = (self.rendition,)
        self.audio = AudioFanout()
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
        spec = self.ladder.spec(tier)
        if not spec.has_video:
            return None
        rendition = self.renditions.get(tier)
        if rendition is None:
            rendition = self.renditions[tier] = Rendition(self.config, spec, self.source,
                                                          top=False)
        return rendition

    def attach_video(self, sink: Sink, tier: str, reason: str = "join") -> None:
        rendition = self.rendition_for(tier)
        if rendition is not None:
            rendition.attach(sink, reason)
        self._update_targets()

    def detach_video(self, sink: Sink, tier: str) -> None:
        rendition = self.renditions.get(tier)
        if rendition is not None:
            rendition.detach(sink)
        self._update_targets()

    def _update_targets(self) -> None:
        """Feed decoded frames only to the renditions in use (best first)."""
        self.source.targets = tuple(r for name in self.ladder.names
                                    if (r := self.renditions.get(name)) is not None
                                    and r.in_use)

    def tiers_in_use(self) -> list[str]:
        return [r.tier for r in self.source.targets]

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
        await self.source.close()
        for rendition in self.renditions.values():
            await rendition.close()
        self.audio.close()

    def stats(self) -> dict:
        return {
            "lesson_id": self.lesson_id,
            "publisher": self.publisher.stats() if self.publisher else None,
            "renditions": [r.stats() for name in self.ladder.names
                           if (r := self.renditions.get(name)) is not None],
            "tiers_in_use": self.tiers_in_use(),
            "caps": dict(self.caps),
            "audio_packets": self.audio.packets,
            "subscribers": {pid: s.stats() for pid, s in self.subscribers.items()},
        }
