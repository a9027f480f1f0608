"""The embedded default: lessons kept in ``<library>/classroom.db``, the rest in memory.

A restart mid-lesson finds its lesson as it was (state, times, title, teacher, school):
a live lesson stays live and pages reconnect to it. Presence and lesson events stay
in-process (one process; its sockets are gone after a restart anyway), as in
:class:`MemoryStore`. Calls run on the database thread (store/sqlite_file.py); a locked
or full database is StoreUnavailable (store_unavailable, retry), nothing half-written.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .base import LessonEventHandler, LessonRecord
from .memory import MemoryStore
from .sqlite_file import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS lessons (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS lessons_created ON lessons (created_at);
"""


class SqliteStore(MemoryStore):
    def __init__(self, path: Path, *, presence_ttl: float = 30.0) -> None:
        super().__init__(presence_ttl=presence_ttl)
        self.file = SqliteFile(path, SCHEMA, name="lesson-db")

    async def start(self, on_event: LessonEventHandler) -> None:
        await self.file.open()
        await super().start(on_event)

    async def close(self) -> None:
        await super().close()
        await self.file.close()

    async def ping(self) -> bool:
        try:
            await self.file.run(lambda c: c.execute("SELECT 1").fetchone())
        except Exception:  # noqa: BLE001 - readiness: any failure is "not ready"
            return False
        return True

    async def create_lesson(self, lesson: LessonRecord) -> bool:
        row = (lesson.id, lesson.created_at, json.dumps(lesson.to_json(), ensure_ascii=False))

        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute("INSERT OR IGNORE INTO lessons VALUES (?, ?, ?)",
                                row).rowcount > 0

        return await self.file.run(write)

    async def get_lesson(self, lesson_id: str) -> LessonRecord | None:
        def read(conn: sqlite3.Connection) -> str | None:
            found = conn.execute("SELECT doc FROM lessons WHERE id=?", (lesson_id,)).fetchone()
            return found[0] if found else None

        raw = await self.file.run(read)
        return LessonRecord.from_json(json.loads(raw)) if raw else None

    async def save_lesson(self, lesson: LessonRecord) -> None:
        row = (lesson.id, lesson.created_at, json.dumps(lesson.to_json(), ensure_ascii=False))
        await self.file.run(lambda c: c.execute(
            "INSERT OR REPLACE INTO lessons VALUES (?, ?, ?)", row))

    async def list_lessons(self) -> list[LessonRecord]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT doc FROM lessons ORDER BY created_at")]

        return [LessonRecord.from_json(json.loads(raw)) for raw in await self.file.run(read)]
