"""A lesson inside the relay: its publisher (replaceable), rendition, audio and subscribers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .config import RelayConfig
from .packets import AUDIO_CLOCK, AUDIO_TIME_BASE, PacketMeta, Timeline, make_packet
from .rendition import Rendition
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

    The rendition and the subscribers belong to the lesson, not to the publisher, so a
    teacher who reconnects replaces only the publisher: classrooms keep their connections
    and get a keyframe from the new source.
    """

    def __init__(self, lesson_id: str, config: RelayConfig) -> None:
        self.lesson_id = lesson_id
        self.config = config
        self.publisher: Publisher | None = None
        self.rendition = Rendition(config, "high")
        self.audio = AudioFanout()
        self.subscribers: dict[str, Subscriber] = {}
        self.closed = False
        self._sources = 0

    def next_source(self) -> int:
        self._sources += 1
        return self._sources

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
        await self.rendition.close()
        self.audio.close()

    def stats(self) -> dict:
        return {
            "lesson_id": self.lesson_id,
            "publisher": self.publisher.stats() if self.publisher else None,
            "renditions": [self.rendition.stats()],
            "audio_packets": self.audio.packets,
            "subscribers": {pid: s.stats() for pid, s in self.subscribers.items()},
        }
