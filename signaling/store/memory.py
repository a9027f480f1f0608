"""In-process store: the embedded default, one process, no servers."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from .base import LessonEventHandler, LessonRecord, PresenceRecord, Store

logger = logging.getLogger(__name__)


class MemoryStore(Store):
    def __init__(self, *, presence_ttl: float = 30.0) -> None:
        self.presence_ttl = presence_ttl
        self._lessons: dict[str, LessonRecord] = {}
        self._presence: dict[str, dict[str, tuple[float, PresenceRecord]]] = {}
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None

    async def start(self, on_event: LessonEventHandler) -> None:
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(on_event))

    async def _dispatch(self, on_event: LessonEventHandler) -> None:
        # One task delivers events in order, as Redis pub/sub would; a failing
        # handler is the handler's problem, not the channel's.
        while True:
            lesson_id, event = await self._events.get()
            try:
                await on_event(lesson_id, event)
            except Exception:
                logger.exception("lesson event handler failed")

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None

    async def ping(self) -> bool:
        return True

    async def create_lesson(self, lesson: LessonRecord) -> bool:
        if lesson.id in self._lessons:
            return False
        self._lessons[lesson.id] = copy.copy(lesson)
        return True

    async def get_lesson(self, lesson_id: str) -> LessonRecord | None:
        lesson = self._lessons.get(lesson_id)
        return copy.copy(lesson) if lesson else None

    async def save_lesson(self, lesson: LessonRecord) -> None:
        self._lessons[lesson.id] = copy.copy(lesson)

    async def list_lessons(self) -> list[LessonRecord]:
        return [copy.copy(v) for v in sorted(self._lessons.values(), key=lambda x: x.created_at)]

    async def put_presence(self, record: PresenceRecord) -> None:
        peers = self._presence.setdefault(record.lesson, {})
        peers[record.peer_id] = (time.monotonic() + self.presence_ttl, copy.copy(record))

    async def remove_presence(self, lesson_id: str, peer_id: str) -> None:
        peers = self._presence.get(lesson_id)
        if peers is not None:
            peers.pop(peer_id, None)
            if not peers:
                del self._presence[lesson_id]

    async def roster(self, lesson_id: str) -> list[PresenceRecord]:
        peers = self._presence.get(lesson_id, {})
        now = time.monotonic()
        for peer_id in [p for p, (exp, _) in peers.items() if exp <= now]:
            del peers[peer_id]
        return sorted((copy.copy(r) for _, r in peers.values()), key=lambda r: r.joined_at)

    async def publish(self, lesson_id: str, event: dict[str, Any]) -> None:
        self._events.put_nowait((lesson_id, copy.deepcopy(event)))
