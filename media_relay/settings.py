"""What the relay remembers for objects that do not exist yet: lesson settings said before
the lesson's first offer, peer settings said before (or kept across) a peer's reconnect.

Plain data: the :class:`~.relay.Relay` writes it when told, applies it to the live objects,
and reads it when it builds a lesson or a peer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RememberedSettings:
    stages: dict[str, str | None] = field(default_factory=dict)
    """lesson id -> uplink peer id on stage (``set_stage``)."""
    shares: dict[str, bool] = field(default_factory=dict)
    """lesson id -> the teacher's last ``share {on}`` (``set_share``)."""
    caps: dict[str, dict[str, int]] = field(default_factory=dict)
    """lesson id -> school -> bit/s (``set_cap``); a lesson shares its dict with this."""
    muted: set[str] = field(default_factory=set)
    """Uplink peer ids the teacher muted (kept for an uplink that reconnects)."""
    grid_views: dict[str, list[str]] = field(default_factory=dict)
    """grid peer id -> the teacher's view (kept for a grid that connects later)."""
    low_bandwidth: dict[str, bool] = field(default_factory=dict)
    """Subscriber peer ids with the low-bandwidth button on."""
    on_air: set[str] = field(default_factory=set)
    """Lesson ids on air (``set_on_air``: live); only what is live is kept."""

    def caps_of(self, lesson_id: str) -> dict[str, int]:
        """The lesson's school caps (the same dict every time: a lesson keeps it)."""
        return self.caps.setdefault(lesson_id, {})

    def set_cap(self, lesson_id: str, school: str, bits_per_second: int | None) -> None:
        caps = self.caps_of(lesson_id)
        if bits_per_second is None or bits_per_second <= 0:
            caps.pop(school, None)
        else:
            caps[school] = int(bits_per_second)

    def set_muted(self, peer_id: str, muted: bool) -> None:
        if muted:
            self.muted.add(peer_id)
        else:
            self.muted.discard(peer_id)

    def set_low_bandwidth(self, peer_id: str, on: bool) -> None:
        if on:
            self.low_bandwidth[peer_id] = True
        else:
            self.low_bandwidth.pop(peer_id, None)

    def forget_lesson(self, lesson_id: str) -> None:
        """The lesson ended: its settings go (peer settings stay: peer ids are per session)."""
        self.caps.pop(lesson_id, None)
        self.stages.pop(lesson_id, None)
        self.shares.pop(lesson_id, None)
        self.on_air.discard(lesson_id)
