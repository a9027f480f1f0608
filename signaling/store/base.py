"""The store interface shared by the memory and Redis backends.

The store holds what several signaling nodes must agree on: lessons and their state,
who is present (entries expire unless refreshed, so a dead node's peers vanish), and a
per-lesson event channel that every node hears, its own publications included.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

LessonEventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]

LESSON_STATES = ("waiting", "live", "ended")


class StoreUnavailable(Exception):
    """The backend cannot be reached (Redis down); callers report store_unavailable."""


@dataclass
class LessonRecord:
    id: str
    title: str = ""
    state: str = "waiting"  # waiting | live | ended
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    teacher: str = ""
    school: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LessonRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class PresenceRecord:
    peer_id: str
    lesson: str
    role: str
    name: str = ""
    school: str = ""
    node: str = ""
    media_state: str = "none"
    hand: bool = False
    tier: str = ""
    """A classroom's video tier (high|mid|low|audio) once the relay moved it; "" before."""
    joined_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """The roster entry as clients see it (no node name)."""
        data = asdict(self)
        data.pop("node")
        data.pop("lesson")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PresenceRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class Store(abc.ABC):
    """One interface, two backends; the same tests run against both."""

    presence_ttl: float

    @abc.abstractmethod
    async def start(self, on_event: LessonEventHandler) -> None:
        """Connect and start delivering lesson events to ``on_event(lesson_id, event)``."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the backend answers (``/readyz``)."""

    @property
    def events_connected(self) -> bool:
        """True while lesson events are being heard (Redis: the pub/sub link is up).

        After a reconnect the backend delivers ``("*", {"type": "resync"})``: events
        published meanwhile are lost, so listeners resend what the store holds.
        """
        return True

    # lessons
    @abc.abstractmethod
    async def create_lesson(self, lesson: LessonRecord) -> bool:
        """Store a new lesson; False if one with that id exists already."""

    @abc.abstractmethod
    async def get_lesson(self, lesson_id: str) -> LessonRecord | None: ...

    @abc.abstractmethod
    async def save_lesson(self, lesson: LessonRecord) -> None: ...

    @abc.abstractmethod
    async def list_lessons(self) -> list[LessonRecord]: ...

    # presence
    @abc.abstractmethod
    async def put_presence(self, record: PresenceRecord) -> None:
        """Insert or refresh a peer; it expires ``presence_ttl`` seconds after the last put."""

    @abc.abstractmethod
    async def remove_presence(self, lesson_id: str, peer_id: str) -> None: ...

    @abc.abstractmethod
    async def roster(self, lesson_id: str) -> list[PresenceRecord]:
        """Peers present now (expired entries are dropped), oldest first."""

    # events
    @abc.abstractmethod
    async def publish(self, lesson_id: str, event: dict[str, Any]) -> None:
        """Deliver ``event`` to every node's ``on_event`` (this one included)."""
