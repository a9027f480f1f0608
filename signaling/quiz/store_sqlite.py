"""Quiz state in ``<library>/classroom.db`` (the embedded default): it survives a restart.

Same interface as the memory and Redis stores (quiz/store.py): the question set, rounds
(the current one included), every answer and the classrooms that joined. An answer is
committed before ``put_answer`` returns, so before it is acknowledged; the checks for a
resent ``answer_id`` and a taken (round, question, responder) slot run in the same
transaction as the insert (and the table's UNIQUE keys hold them too). Timed rounds not
yet closed are found again at start (``timed_rounds``) to set their timers.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from signaling.store.sqlite_file import SqliteFile, transaction

from .store import DUPLICATE, STORED, TAKEN, QuizStore, slot_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS quiz_sets (lesson TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quiz_rounds (
    lesson TEXT NOT NULL, round_id TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    closes_at REAL, closed_at REAL, PRIMARY KEY (lesson, round_id));
CREATE INDEX IF NOT EXISTS quiz_rounds_timed ON quiz_rounds (closes_at)
    WHERE closes_at IS NOT NULL AND closed_at IS NULL;
CREATE TABLE IF NOT EXISTS quiz_current (lesson TEXT PRIMARY KEY, round_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quiz_answers (
    lesson TEXT NOT NULL, answer_id TEXT NOT NULL, round_id TEXT NOT NULL,
    slot TEXT NOT NULL, responder TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (lesson, answer_id), UNIQUE (lesson, round_id, slot));
CREATE INDEX IF NOT EXISTS quiz_answers_responder ON quiz_answers (lesson, responder);
CREATE TABLE IF NOT EXISTS quiz_rooms (
    lesson TEXT NOT NULL, sub TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (lesson, sub));
"""


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False)


def _round_row(rnd: dict[str, Any]) -> tuple[Any, Any]:
    return rnd.get("closes_at"), rnd.get("closed_at")


class SqliteQuizStore(QuizStore):
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(path, SCHEMA, name="quiz-db")

    async def start(self) -> None:
        await self.file.open()

    async def close(self) -> None:
        await self.file.close()

    async def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        def read(conn: sqlite3.Connection) -> Any:
            row = conn.execute(sql, args).fetchone()
            return row[0] if row else None

        return await self.file.run(read)

    async def _docs(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        rows = await self.file.run(lambda c: [r[0] for r in c.execute(sql, args)])
        return [json.loads(r) for r in rows]

    # question set ---------------------------------------------------------------------
    async def get_set(self, lesson: str) -> dict[str, Any] | None:
        raw = await self._one("SELECT doc FROM quiz_sets WHERE lesson=?", (lesson,))
        return json.loads(raw) if raw else None

    async def save_set(self, lesson: str, qset: dict[str, Any]) -> None:
        row = (lesson, _dump(qset))
        await self.file.run(lambda c: c.execute(
            "INSERT OR REPLACE INTO quiz_sets VALUES (?, ?)", row))

    # rounds ---------------------------------------------------------------------------
    async def add_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        rid = rnd["round_id"]

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM quiz_rounds "
                                   "WHERE lesson=?", (lesson,)).fetchone()[0]
                conn.execute("INSERT OR REPLACE INTO quiz_rounds VALUES (?, ?, ?, ?, ?, ?)",
                             (lesson, rid, seq, _dump(rnd), *_round_row(rnd)))
                conn.execute("INSERT OR REPLACE INTO quiz_current VALUES (?, ?)",
                             (lesson, rid))

        await self.file.run(write)

    async def get_round(self, lesson: str, round_id: str) -> dict[str, Any] | None:
        raw = await self._one("SELECT doc FROM quiz_rounds WHERE lesson=? AND round_id=?",
                              (lesson, round_id))
        return json.loads(raw) if raw else None

    async def current_round(self, lesson: str) -> dict[str, Any] | None:
        raw = await self._one(
            "SELECT r.doc FROM quiz_current c JOIN quiz_rounds r "
            "ON r.lesson = c.lesson AND r.round_id = c.round_id WHERE c.lesson=?", (lesson,))
        return json.loads(raw) if raw else None

    async def rounds(self, lesson: str) -> list[dict[str, Any]]:
        return await self._docs("SELECT doc FROM quiz_rounds WHERE lesson=? ORDER BY seq",
                                (lesson,))

    async def update_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        rid = rnd["round_id"]

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                old = conn.execute("SELECT seq, closed_at FROM quiz_rounds WHERE lesson=? "
                                   "AND round_id=?", (lesson, rid)).fetchone()
                doc = dict(rnd)
                if old is not None and old[1] is not None and doc.get("closed_at") is None:
                    doc["closed_at"] = old[1]  # closing happens once (as Redis's SET NX)
                seq = old[0] if old is not None else conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM quiz_rounds WHERE lesson=?",
                    (lesson,)).fetchone()[0]
                conn.execute("INSERT OR REPLACE INTO quiz_rounds VALUES (?, ?, ?, ?, ?, ?)",
                             (lesson, rid, seq, _dump(doc), *_round_row(doc)))

        await self.file.run(write)

    async def close_round(self, lesson: str, round_id: str, at: float
                          ) -> dict[str, Any] | None:
        def write(conn: sqlite3.Connection) -> dict[str, Any] | None:
            with transaction(conn):
                row = conn.execute("SELECT doc, closed_at FROM quiz_rounds WHERE lesson=? "
                                   "AND round_id=?", (lesson, round_id)).fetchone()
                if row is None or row[1] is not None:
                    return None
                doc = json.loads(row[0])
                if doc.get("closed_at") is not None:
                    return None
                doc["closed_at"] = at
                conn.execute("UPDATE quiz_rounds SET doc=?, closed_at=? WHERE lesson=? AND "
                             "round_id=?", (_dump(doc), at, lesson, round_id))
                return doc

        return await self.file.run(write)

    async def timed_rounds(self) -> list[tuple[str, str, float]]:
        rows = await self.file.run(lambda c: c.execute(
            "SELECT lesson, round_id, closes_at FROM quiz_rounds "
            "WHERE closes_at IS NOT NULL AND closed_at IS NULL").fetchall())
        return [(lesson, rid, float(closes)) for lesson, rid, closes in rows]

    # answers --------------------------------------------------------------------------
    async def put_answer(self, lesson: str, record: dict[str, Any]
                         ) -> tuple[str, dict[str, Any] | None]:
        aid, rid, slot = record["answer_id"], record["round_id"], slot_of(record)
        row = (lesson, aid, rid, slot, record["responder"], _dump(record))

        def write(conn: sqlite3.Connection) -> tuple[str, str | None]:
            with transaction(conn):
                same = conn.execute("SELECT doc FROM quiz_answers WHERE lesson=? AND "
                                    "answer_id=?", (lesson, aid)).fetchone()
                if same is not None:
                    return DUPLICATE, same[0]
                taken = conn.execute("SELECT doc FROM quiz_answers WHERE lesson=? AND "
                                     "round_id=? AND slot=?", (lesson, rid, slot)).fetchone()
                if taken is not None:
                    return TAKEN, taken[0]
                conn.execute("INSERT INTO quiz_answers VALUES (?, ?, ?, ?, ?, ?)", row)
                return STORED, None

        status, raw = await self.file.run(write)
        return status, (json.loads(raw) if raw else None)

    async def get_answer(self, lesson: str, answer_id: str) -> dict[str, Any] | None:
        raw = await self._one("SELECT doc FROM quiz_answers WHERE lesson=? AND answer_id=?",
                              (lesson, answer_id))
        return json.loads(raw) if raw else None

    async def answers(self, lesson: str, round_id: str) -> list[dict[str, Any]]:
        return await self._docs("SELECT doc FROM quiz_answers WHERE lesson=? AND round_id=? "
                                "ORDER BY rowid", (lesson, round_id))

    async def answers_of(self, lesson: str, responder: str) -> list[dict[str, Any]]:
        return await self._docs("SELECT doc FROM quiz_answers WHERE lesson=? AND "
                                "responder=? ORDER BY rowid", (lesson, responder))

    async def version(self, lesson: str, round_id: str) -> int:
        """Answers stored in the round (they are never removed: it only grows)."""
        return int(await self._one("SELECT COUNT(*) FROM quiz_answers WHERE lesson=? AND "
                                   "round_id=?", (lesson, round_id)) or 0)

    # classrooms -----------------------------------------------------------------------
    async def add_room(self, lesson: str, sub: str, info: dict[str, Any]) -> None:
        row = (lesson, sub, _dump(info))
        await self.file.run(lambda c: c.execute(
            "INSERT OR REPLACE INTO quiz_rooms VALUES (?, ?, ?)", row))

    async def rooms(self, lesson: str) -> dict[str, dict[str, Any]]:
        rows = await self.file.run(lambda c: c.execute(
            "SELECT sub, doc FROM quiz_rooms WHERE lesson=? ORDER BY rowid",
            (lesson,)).fetchall())
        return {sub: json.loads(doc) for sub, doc in rows}
