"""Fixtures for relay tests: a Relay whose listener records what it reports, closed (and
checked) afterwards."""

from __future__ import annotations

import pytest

from media_relay import Relay, RelayConfig
from media_relay.listener import RelayListener, TierChange


class Events(RelayListener):
    """A RelayListener that keeps every event."""

    def __init__(self) -> None:
        self.peer_states: list[tuple[str, str, str]] = []
        self.publisher: list[tuple[str, bool]] = []
        self.uplinks: list[tuple[str, str, bool]] = []
        self.violations: list[tuple[str, str, str]] = []
        self.tiers: list[tuple[str, str, str, str, str]] = []
        """(lesson, peer, tier, reason, direction)"""

    def on_peer_state(self, lesson_id: str, peer_id: str, state: str) -> None:
        self.peer_states.append((lesson_id, peer_id, state))

    def on_publisher(self, lesson_id: str, active: bool) -> None:
        self.publisher.append((lesson_id, active))

    def on_tier(self, lesson_id: str, peer_id: str, change: TierChange) -> None:
        self.tiers.append((lesson_id, peer_id, change.tier, change.reason, change.direction))

    def on_uplink(self, lesson_id: str, peer_id: str, active: bool) -> None:
        self.uplinks.append((lesson_id, peer_id, active))

    def on_uplink_violation(self, lesson_id: str, peer_id: str, code: str) -> None:
        self.violations.append((lesson_id, peer_id, code))

    def states_of(self, peer_id: str) -> list[str]:
        return [s for _, p, s in self.peer_states if p == peer_id]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def make_relay(events):
    relays: list[Relay] = []

    def make(**config) -> Relay:
        relay = Relay(RelayConfig(**config), listener=events)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:  # a test that failed half-way must not leak into the next
        await relay.close()


@pytest.fixture
async def relay(make_relay):
    relay = make_relay()
    yield relay
    await relay.close()
