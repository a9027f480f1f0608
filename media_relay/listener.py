"""What the relay reports to its owner (signaling): one typed listener, not positional callbacks.

A :class:`RelayListener` gets every event the relay reports, by relay ids (lesson id, relay
peer id). :class:`CallbackListener` adapts the older keyword callbacks (``on_tier=...``) to
it. :class:`Reports` is how the relay calls a listener: a listener that raises is logged,
never lets the relay's own bookkeeping fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierChange:
    """A subscriber moved to another tier of the ladder."""

    tier: str
    reason: str
    """From the rate controller: ``loss``, ``remb``, ``cap``, ``manual``, ``probe_ok``,
    ``audio_floor`` ..."""
    direction: str
    """``up`` or ``down``."""


class RelayListener(Protocol):
    """Every event the relay reports. Called on the event loop; must not block."""

    def on_peer_state(self, lesson_id: str, peer_id: str, state: str) -> None:
        """A peer's connection state: ``connecting|connected|failed|closed`` (a peer that
        does not connect within ``connect_timeout`` is reported ``failed``)."""

    def on_publisher(self, lesson_id: str, active: bool) -> None:
        """The teacher's media started or stopped flowing."""

    def on_tier(self, lesson_id: str, peer_id: str, change: TierChange) -> None:
        """A subscriber moved to another tier."""

    def on_uplink(self, lesson_id: str, peer_id: str, active: bool) -> None:
        """A classroom's uplink media started or stopped flowing."""

    def on_uplink_violation(self, lesson_id: str, peer_id: str, code: str) -> None:
        """A classroom's uplink sends over its cap (``uplink_over_cap``)."""


class CallbackListener:
    """A :class:`RelayListener` made of keyword callbacks, each optional (the Relay's older
    ``on_peer_state=``, ``on_publisher=``, ``on_tier=``, ``on_uplink=``,
    ``on_uplink_violation=`` arguments); ``on_tier`` gets ``(lesson_id, peer_id, tier,
    reason, direction)``."""

    def __init__(self, *,
                 on_peer_state: Callable[[str, str, str], None] | None = None,
                 on_publisher: Callable[[str, bool], None] | None = None,
                 on_tier: Callable[[str, str, str, str, str], None] | None = None,
                 on_uplink: Callable[[str, str, bool], None] | None = None,
                 on_uplink_violation: Callable[[str, str, str], None] | None = None) -> None:
        self._peer_state = on_peer_state
        self._publisher = on_publisher
        self._tier = on_tier
        self._uplink = on_uplink
        self._violation = on_uplink_violation

    def on_peer_state(self, lesson_id: str, peer_id: str, state: str) -> None:
        if self._peer_state is not None:
            self._peer_state(lesson_id, peer_id, state)

    def on_publisher(self, lesson_id: str, active: bool) -> None:
        if self._publisher is not None:
            self._publisher(lesson_id, active)

    def on_tier(self, lesson_id: str, peer_id: str, change: TierChange) -> None:
        if self._tier is not None:
            self._tier(lesson_id, peer_id, change.tier, change.reason, change.direction)

    def on_uplink(self, lesson_id: str, peer_id: str, active: bool) -> None:
        if self._uplink is not None:
            self._uplink(lesson_id, peer_id, active)

    def on_uplink_violation(self, lesson_id: str, peer_id: str, code: str) -> None:
        if self._violation is not None:
            self._violation(lesson_id, peer_id, code)


class Reports:
    """Calls the listener; logs (never raises) what the listener raises."""

    def __init__(self, listener: RelayListener | None) -> None:
        self.listener = listener

    def _call(self, name: str, *args: object) -> None:
        if self.listener is None:
            return
        try:
            getattr(self.listener, name)(*args)
        except Exception:
            logger.exception("%s listener failed", name)

    def peer_state(self, lesson_id: str, peer_id: str, state: str) -> None:
        self._call("on_peer_state", lesson_id, peer_id, state)

    def publisher(self, lesson_id: str, active: bool) -> None:
        self._call("on_publisher", lesson_id, active)

    def tier(self, lesson_id: str, peer_id: str, change: TierChange) -> None:
        self._call("on_tier", lesson_id, peer_id, change)

    def uplink(self, lesson_id: str, peer_id: str, active: bool) -> None:
        self._call("on_uplink", lesson_id, peer_id, active)

    def uplink_violation(self, lesson_id: str, peer_id: str, code: str) -> None:
        self._call("on_uplink_violation", lesson_id, peer_id, code)
