"""Fixtures for relay tests: a Relay with recorded callbacks, closed (and checked) afterwards."""

from __future__ import annotations

import pytest

from media_relay import Relay, RelayConfig


class Events:
    def __init__(self) -> None:
        self.peer_states: list[tuple[str, str, str]] = []
        self.publisher: list[tuple[str, bool]] = []
        self.uplinks: list[tuple[str, str, bool]] = []
        self.violations: list[tuple[str, str, str]] = []

    def states_of(self, peer_id: str) -> list[str]:
        return [s for _, p, s in self.peer_states if p == peer_id]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def make_relay(events):
    relays: list[Relay] = []

    def make(**config) -> Relay:
        relay = Relay(
            RelayConfig(**config),
            on_peer_state=lambda lesson, peer, state: events.peer_states.append(
                (lesson, peer, state)),
            on_publisher=lambda lesson, active: events.publisher.append((lesson, active)),
            on_uplink=lambda lesson, peer, active: events.uplinks.append((lesson, peer, active)),
            on_uplink_violation=lambda lesson, peer, code: events.violations.append(
                (lesson, peer, code)),
        )
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
