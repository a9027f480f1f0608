"""A decoded-once video feed and its renditions: the teacher's camera, the teacher's share,
the stage classroom. Each is one :class:`~.rendition.VideoSource` (one decoder thread)
feeding one :class:`~.rendition.Rendition` per tier in use (one encoder thread each).
"""

from __future__ import annotations

from collections.abc import Callable

from .config import RelayConfig
from .rendition import Rendition, VideoSource
from .tracks import Sink


class VideoFeed:
    """Tiers of one video source, each encoded once while in use.

    ``always_top``: the top tier is encoded whenever media flows, watched or not (the
    camera: the recorder is on it). Otherwise a tier is encoded only while it has sinks.
    """

    def __init__(self, config: RelayConfig, *, always_top: bool) -> None:
        self.config = config
        self.ladder = config.ladder
        self.counts_subscribers = always_top
        """Only the camera's sinks count in ``classroom_subscribers``."""
        self.source = VideoSource()
        self.renditions: dict[str, Rendition] = {}
        if always_top:
            top = self.renditions[self.ladder.top] = Rendition(
                config, self.ladder.spec(self.ladder.top), self.source, top=True)
            self.source.targets = (top,)

    def rendition_for(self, tier: str) -> Rendition | None:
        """The tier's rendition (created on first use); None for the audio-only tier."""
        spec = self.ladder.spec(tier)
        if not spec.has_video:
            return None
        rendition = self.renditions.get(tier)
        if rendition is None:
            rendition = self.renditions[tier] = Rendition(self.config, spec, self.source,
                                                          top=False)
            rendition.counts_subscribers = self.counts_subscribers
        return rendition

    def attach(self, sink: Sink, tier: str, reason: str = "join") -> None:
        rendition = self.rendition_for(tier)
        if rendition is not None:
            rendition.attach(sink, reason)
        self._update_targets()

    def detach(self, sink: Sink, tier: str) -> None:
        rendition = self.renditions.get(tier)
        if rendition is not None:
            rendition.detach(sink)
        self._update_targets()

    def move(self, sink: Sink, old: str | None, new: str | None, reason: str,
             restart: Callable[[], None]) -> str | None:
        """Move ``sink`` from tier ``old`` to ``new`` (None: not attached) and return
        ``new``; a sink that leaves a tier is restarted (it waits for the new tier's
        keyframe), one that joins one gets a keyframe for ``reason``."""
        if new == old:
            return old
        if old is not None:
            self.detach(sink, old)
            restart()
        if new is not None:
            self.attach(sink, new, reason)
        return new

    def request_keyframe(self, tier: str | None, reason: str) -> None:
        rendition = self.renditions.get(tier) if tier else None
        if rendition is not None:
            rendition.request_keyframe(reason)

    def _update_targets(self) -> None:
        """Feed decoded frames only to the renditions in use (best first)."""
        self.source.targets = tuple(r for name in self.ladder.names
                                    if (r := self.renditions.get(name)) is not None
                                    and r.in_use)

    def tiers_in_use(self) -> list[str]:
        return [r.tier for r in self.source.targets]

    async def close(self) -> None:
        await self.source.close()
        for rendition in self.renditions.values():
            await rendition.close()

    def stats(self) -> list[dict]:
        return [r.stats() for name in self.ladder.names
                if (r := self.renditions.get(name)) is not None]
