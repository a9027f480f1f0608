"""The rendition ladder as data: tier names, sizes, frame rates and bitrates (no encoder code).

A :class:`Ladder` is an ordered table of :class:`TierSpec`, best first, ending with the
audio-only tier (no video: the teacher's picture paused on its last frame). Each tier is
encoded once and shared by every subscriber on it; the rate controller
(:mod:`media_relay.rate_control`) picks a subscriber's tier from this table.

Imports nothing but the standard library, so the rate controller and its tests stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

HIGH = "high"
MID = "mid"
LOW = "low"
AUDIO = "audio"


@dataclass(frozen=True)
class TierSpec:
    """One rung: what is encoded for it, and what it costs on the subscriber's link."""

    name: str
    width: int
    """Encoded width (0 for the audio-only tier)."""
    height: int
    fps: float
    """Frames per second sent (0 for the audio-only tier)."""
    video_bitrate: int
    """Encoder target (bit/s); 0 for the audio-only tier."""

    @property
    def has_video(self) -> bool:
        return self.video_bitrate > 0


@dataclass(frozen=True)
class Ladder:
    """Tiers from best to worst; the last one is audio-only (``video_bitrate == 0``).

    ``required(name)`` is what a subscriber's link must carry for a tier: its video plus the
    audio (Opus with in-band FEC), times ``overhead`` (RTP/UDP/IP/SRTP headers).
    """

    tiers: tuple[TierSpec, ...] = (
        TierSpec(HIGH, 1280, 720, 30.0, 1_700_000),
        TierSpec(MID, 640, 360, 30.0, 500_000),
        TierSpec(LOW, 320, 180, 15.0, 150_000),
        TierSpec(AUDIO, 0, 0, 0.0, 0),
    )
    audio_bitrate: int = 32_000
    """Opus target (bit/s) on every tier; 24-32 kbit/s still fits the thinnest link."""
    audio_fec: bool = True
    """Opus in-band FEC (a lost 20 ms packet is rebuilt from the next one)."""
    overhead: float = 1.0
    """Multiplier for packet headers when comparing a tier with a link estimate."""
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tiers]
        if len(self.tiers) < 2:
            raise ValueError("a ladder needs at least one video tier and the audio-only tier")
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique: {names}")
        if self.tiers[-1].has_video or any(not t.has_video for t in self.tiers[:-1]):
            raise ValueError("exactly the last tier is audio-only (video_bitrate 0)")
        rates = [t.video_bitrate for t in self.tiers]
        if any(a <= b for a, b in zip(rates, rates[1:], strict=False)):
            raise ValueError(f"video bitrates must strictly decrease: {rates}")
        if self.audio_bitrate <= 0 or self.overhead < 1.0:
            raise ValueError("audio_bitrate must be positive and overhead >= 1")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    # ---- construction ---------------------------------------------------------------
    def with_rates(self, audio_bitrate: int | None = None, **video_bitrates: int) -> Ladder:
        """A copy with some tiers' video bitrates (and/or the audio rate) changed."""
        unknown = set(video_bitrates) - set(self._index)
        if unknown:
            raise ValueError(f"no such tier: {sorted(unknown)}")
        tiers = tuple(replace(t, video_bitrate=video_bitrates.get(t.name, t.video_bitrate))
                      for t in self.tiers)
        return replace(self, tiers=tiers,
                       audio_bitrate=self.audio_bitrate if audio_bitrate is None
                       else audio_bitrate)

    @classmethod
    def from_dict(cls, data: Mapping) -> Ladder:
        """``{"tiers": [{"name", "width", "height", "fps", "video_bitrate"}, ...],
        "audio_bitrate": ..., "audio_fec": ..., "overhead": ...}`` (config files, tests)."""
        kwargs = {k: data[k] for k in ("audio_bitrate", "audio_fec", "overhead") if k in data}
        if "tiers" in data:
            kwargs["tiers"] = tuple(TierSpec(**t) for t in data["tiers"])
        return cls(**kwargs)

    # ---- lookups ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[TierSpec]:
        return iter(self.tiers)

    def __len__(self) -> int:
        return len(self.tiers)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    @property
    def top(self) -> str:
        return self.tiers[0].name

    @property
    def audio_only(self) -> str:
        return self.tiers[-1].name

    @property
    def lowest_video(self) -> str:
        return self.tiers[-2].name

    def spec(self, name: str) -> TierSpec:
        return self.tiers[self.index(name)]

    def index(self, name: str) -> int:
        """0 for the best tier; larger is lower."""
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(f"no such tier: {name!r}") from None

    def required(self, name: str) -> int:
        """Bit/s the link must carry for this tier (video + audio, with overhead)."""
        return self.carried(self.spec(name).video_bitrate)

    def carried(self, video_bitrate: int, audio_lines: int = 1) -> int:
        """Bit/s a link carries for ``video_bitrate`` of video (any number of lines) and
        ``audio_lines`` Opus streams, with header overhead."""
        return int((video_bitrate + audio_lines * self.audio_bitrate) * self.overhead)

    def above(self, name: str) -> str | None:
        i = self.index(name)
        return self.tiers[i - 1].name if i > 0 else None

    def below(self, name: str) -> str | None:
        i = self.index(name)
        return self.tiers[i + 1].name if i + 1 < len(self.tiers) else None

    def higher(self, a: str, b: str) -> bool:
        """True when tier ``a`` is better than tier ``b``."""
        return self.index(a) < self.index(b)

    def lower_of(self, a: str, b: str) -> str:
        return a if self.index(a) >= self.index(b) else b

    def best_fitting(self, bitrate: float | None,
                     required: Callable[[str], int] | None = None) -> str:
        """The best tier whose ``required`` (the ladder's own, or a subscriber's budget)
        fits in ``bitrate`` (audio-only if none does; the best tier when ``bitrate`` is
        None: no limit)."""
        if bitrate is None:
            return self.top
        required = required or self.required
        for tier in self.tiers[:-1]:
            if required(tier.name) <= bitrate:
                return tier.name
        return self.audio_only


DEFAULT_LADDER = Ladder()
