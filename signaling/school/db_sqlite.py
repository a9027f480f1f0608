"""The school database in SQLite (the embedded default): one table of JSON documents.

``docs(kind, id, doc, school_id)``: ``school_id`` copies the document's field of that
name (indexed: a school's classrooms, devices, usage); other filters use
``json_extract``. ``meta('version')`` is bumped by every write in the same transaction.
Writes of this node are serialised by one asyncio lock, so :meth:`apply`'s guard reads a
database no other write of this node changes until its transaction commits.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from signaling.store.base import StoreUnavailable
from signaling.store.sqlite_file import SqliteFile, transaction

from .db import Delete, Guard, Put, SchoolDB, check_kind, unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, school_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS docs_school ON docs (kind, school_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('school_version', 0);
"""

_FIELD_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _school_of(doc: dict[str, Any]) -> str:
    value = doc.get("school_id")
    return value if isinstance(value, str) else ""


class SqliteSchoolDB(SchoolDB):
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(path, SCHEMA, name="school-db")
        self._write_lock = asyncio.Lock()

    async def start(self) -> None:
        await self._run(lambda c: None, opening=True)

    async def close(self) -> None:
        await self.file.close()

    async def _run(self, fn: Any, *, opening: bool = False) -> Any:
        try:
            if opening:
                await self.file.open()
            return await self.file.run(fn)
        except StoreUnavailable as exc:
            raise unavailable(str(exc)) from None

    async def get(self, kind: str, id: str) -> dict[str, Any] | None:
        check_kind(kind)

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT doc FROM docs WHERE kind=? AND id=?",
                               (kind, id)).fetchone()
            return row[0] if row else None

        raw = await self._run(read)
        return json.loads(raw) if raw is not None else None

    async def list(self, kind: str, **equals: Any) -> list[dict[str, Any]]:
        check_kind(kind)
        sql, args = "SELECT doc FROM docs WHERE kind=?", [kind]
        for name, value in equals.items():
            if not set(name) <= _FIELD_OK:
                raise ValueError(f"bad field name {name!r}")
            if name == "school_id" and isinstance(value, str):
                sql += " AND school_id=?"
            else:
                sql += f" AND json_extract(doc, '$.{name}') IS ?"
                if isinstance(value, bool):
                    value = int(value)
                elif isinstance(value, (list, dict)):
                    raise ValueError(f"list() filters on scalar fields, not {name!r}")
            args.append(value)
        sql += " ORDER BY id"

        def read(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(sql, args)]

        return [json.loads(raw) for raw in await self._run(read)]

    async def put(self, kind: str, id: str, doc: dict[str, Any]) -> None:
        await self.apply([(kind, id, doc)], [])

    async def delete(self, kind: str, id: str) -> bool:
        check_kind(kind)
        async with self._write_lock:
            def write(conn: sqlite3.Connection) -> bool:
                with transaction(conn):
                    gone = conn.execute("DELETE FROM docs WHERE kind=? AND id=?",
                                        (kind, id)).rowcount > 0
                    if gone:
                        _bump(conn)
                return gone

            return bool(await self._run(write))

    async def apply(self, puts: list[Put], deletes: list[Delete],
                    guard: Guard | None = None) -> None:
        rows = [(check_kind(k), i, json.dumps(d, ensure_ascii=False), _school_of(d))
                for k, i, d in puts]
        gone = [(check_kind(k), i) for k, i in deletes]
        async with self._write_lock:
            if guard is not None:
                await guard(self)

            def write(conn: sqlite3.Connection) -> None:
                with transaction(conn):
                    conn.executemany("DELETE FROM docs WHERE kind=? AND id=?", gone)
                    conn.executemany(
                        "INSERT OR REPLACE INTO docs (kind, id, doc, school_id) "
                        "VALUES (?, ?, ?, ?)", rows)
                    _bump(conn)

            await self._run(write)

    async def version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute(
                "SELECT value FROM meta WHERE key='school_version'").fetchone()[0])

        return int(await self._run(read))


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key='school_version'")
