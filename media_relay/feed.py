"""A decoded-once video feed and its renditions: the teacher's camera, the teacher's share,
the stage classroom. Each is one :class:`~.rendition.VideoSource` (one decoder thread)
feeding one :class:`~.rendition.Rendition` per tier in use (one encoder thread each).

A sink's codec is its ``video_codec`` attribute (``"VP8"`` when it has none, as every sink
had before H.264): a tier is encoded in VP8 for the VP8 sinks and, only while it has at
least one H.264 sink, also in H.264 (:mod:`.h264`), from the same decoded frames and on the
same output timeline. An H.264 rendition is started by its first sink and stopped (thread
ended, encoder freed) when its last sink leaves or moves to another tier.
"""

from __future__ import annotations

from collections.abc import Callable

from . import h264
from .config import RelayConfig
from .rendition import Rendition, VideoSource
from .tracks import Sink

VP8 = "VP8"


def codec_of(sink: Sink) -> str:
    """The video codec ``sink`` was negotiated with (VP8 unless it says otherwise)."""
    return getattr(sink, "video_codec", VP8)


class VideoFeed:
    """Tiers of one video source, each encoded once while in use.

    ``always_top``: the top tier is encoded whenever media flows, watched or not (the
    camera: the recorder is on it). Otherwise a tier is encoded only while it has sinks.
    """

    def __init__(self, config: RelayConfig, *, always_top: bool) -> None:
        self.config = config
        self.ladder = config.ladder
        self.always_top = always_top
        self.counts_subscribers = always_top
        """Only the camera's sinks count in ``classroom_subscribers``."""
        self.source = VideoSource()
        self.renditions: dict[str, Rendition] = {}
        """VP8 renditions by tier (kept once created; fed only while in use)."""
        self.h264: dict[str, Rendition] = {}
        """H.264 renditions by tier: only while a sink is on them."""
        self.h264_started = 0
        self.h264_stopped = 0
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

    def _h264_for(self, tier: str) -> Rendition | None:
        """The tier's H.264 rendition, started now if none runs; None for audio-only."""
        spec = self.ladder.spec(tier)
        if not spec.has_video:
            return None
        rendition = self.h264.get(tier)
        if rendition is None:
            rendition = self.h264[tier] = Rendition(
                self.config, spec, self.source, top=tier == self.ladder.top and
                self.always_top, codec=h264.CODEC, always_on=False)
            rendition.counts_subscribers = self.counts_subscribers
            self.h264_started += 1
        return rendition

    def attach(self, sink: Sink, tier: str, reason: str = "join") -> None:
        if codec_of(sink) == h264.CODEC:
            rendition = self._h264_for(tier)
        else:
            rendition = self.rendition_for(tier)
        if rendition is not None:
            rendition.attach(sink, reason)
        self._update_targets()

    def detach(self, sink: Sink, tier: str) -> None:
        if codec_of(sink) == h264.CODEC:
            rendition = self.h264.get(tier)
            if rendition is not None:
                rendition.detach(sink)
                if not rendition.subscriber_count:  # the last H.264 sink of this tier
                    del self.h264[tier]
                    rendition.stop()
                    self.h264_stopped += 1
        else:
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

    def request_keyframe(self, tier: str | None, reason: str, codec: str = VP8) -> None:
        table = self.h264 if codec == h264.CODEC else self.renditions
        rendition = table.get(tier) if tier else None
        if rendition is not None:
            rendition.request_keyframe(reason)

    def _update_targets(self) -> None:
        """Feed decoded frames only to the renditions in use (best first, VP8 first)."""
        self.source.targets = tuple(r for table in (self.renditions, self.h264)
                                    for name in self.ladder.names
                                    if (r := table.get(name)) is not None and r.in_use)

    def tiers_in_use(self) -> list[str]:
        """Tiers encoded in VP8 now (the H.264 ones: :meth:`h264_tiers`)."""
        return [r.tier for r in self.source.targets if r.codec == VP8]

    def h264_tiers(self) -> list[str]:
        """Tiers with an H.264 rendition running now (best first)."""
        return [name for name in self.ladder.names if name in self.h264]

    async def close(self) -> None:
        await self.source.close()
        for rendition in [*self.renditions.values(), *self.h264.values()]:
            await rendition.close()
        self.h264.clear()

    def stats(self) -> list[dict]:
        """VP8 renditions (best first), then the H.264 ones running."""
        return [r.stats() for table in (self.renditions, self.h264) for name in self.ladder.names
                if (r := table.get(name)) is not None]

    def h264_stats(self) -> dict:
        """The H.264 renditions running now, and how many were started and stopped."""
        return {"tiers": self.h264_tiers(), "started": self.h264_started,
                "stopped": self.h264_stopped,
                "renditions": [self.h264[name].stats() for name in self.h264_tiers()]}
