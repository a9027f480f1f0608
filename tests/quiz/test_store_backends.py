"""The quiz store contract on every backend: memory, SQLite (embedded default), Redis;
and SQLite keeping everything across a reopen (a restart)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from signaling.quiz.store import DUPLICATE, STORED, TAKEN, open_quiz_store
from signaling.quiz.store_sqlite import SqliteQuizStore
from signaling.store import StoreUnavailable


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def qstore(request, tmp_path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store = open_quiz_store(url, tmp_path if request.param == "sqlite" else None)
    await store.start()
    yield store
    await store.close()


def answer(aid: str, rid: str = "r1", q: str = "q1", who: str = "c1", value=1) -> dict:
    return {"answer_id": aid, "round_id": rid, "question_id": q, "responder": who,
            "value": value, "at": time.time()}


async def fill(store) -> None:
    await store.save_set("L", {"title": "分数", "questions": [{"id": "q1"}]})
    await store.add_round("L", {"round_id": "r1", "mode": "practice", "questions": ["q1"],
                                "opened_at": 1.0, "closes_at": None, "closed_at": None})
    await store.add_round("L", {"round_id": "r2", "mode": "test", "questions": ["q1"],
                                "opened_at": 2.0, "closes_at": 9e9, "closed_at": None})
    assert (await store.put_answer("L", answer("a1")))[0] == STORED
    assert (await store.put_answer("L", answer("a2", who="c2", value=0)))[0] == STORED
    await store.add_room("L", "c1", {"name": "一班", "school": "s1", "peer_id": "p1"})


async def test_quiz_store_contract(qstore):
    await fill(qstore)
    assert (await qstore.get_set("L"))["title"] == "分数"
    assert (await qstore.current_round("L"))["round_id"] == "r2"
    assert [r["round_id"] for r in await qstore.rounds("L")] == ["r1", "r2"]
    status, stored = await qstore.put_answer("L", answer("a1", value=5))
    assert status == DUPLICATE and stored["value"] == 1
    status, stored = await qstore.put_answer("L", answer("a3"))
    assert status == TAKEN and stored["answer_id"] == "a1"
    assert sorted(a["answer_id"] for a in await qstore.answers("L", "r1")) == ["a1", "a2"]
    assert [a["answer_id"] for a in await qstore.answers_of("L", "c2")] == ["a2"]
    assert (await qstore.get_answer("L", "a2"))["value"] == 0
    assert await qstore.version("L", "r1") == 2
    assert ("L", "r2", 9e9) in await qstore.timed_rounds()
    closed = await qstore.close_round("L", "r2", 5.0)
    assert closed["closed_at"] == 5.0
    assert await qstore.close_round("L", "r2", 6.0) is None  # once
    assert ("L", "r2", 9e9) not in await qstore.timed_rounds()
    assert (await qstore.get_round("L", "r2"))["closed_at"] == 5.0
    assert (await qstore.rooms("L"))["c1"]["name"] == "一班"


async def test_racing_answers_for_one_slot_store_one(qstore):
    await fill(qstore)
    results = await asyncio.gather(*(qstore.put_answer("L", answer(f"x{i}", q="q9", who="c3"))
                                     for i in range(8)))
    assert [s for s, _ in results].count(STORED) == 1
    assert len([a for a in await qstore.answers("L", "r1") if a["question_id"] == "q9"]) == 1


async def test_sqlite_quiz_state_survives_a_reopen(tmp_path):
    store = SqliteQuizStore(tmp_path / "classroom.db")
    await store.start()
    await fill(store)
    await store.close()
    again = SqliteQuizStore(tmp_path / "classroom.db")
    await again.start()
    assert (await again.current_round("L"))["round_id"] == "r2"
    assert sorted(a["answer_id"] for a in await again.answers("L", "r1")) == ["a1", "a2"]
    assert (await again.put_answer("L", answer("a1")))[0] == DUPLICATE
    assert ("L", "r2", 9e9) in await again.timed_rounds()
    await again.close()


async def test_sqlite_locked_database_refuses_the_answer_and_loses_nothing(tmp_path):
    store = SqliteQuizStore(tmp_path / "classroom.db")
    store.file.busy_timeout = 0.3
    await store.start()
    await fill(store)
    other = sqlite3.connect(tmp_path / "classroom.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.put_answer("L", answer("a9", who="c9"))
        assert len(await store.answers("L", "r1")) == 2  # reads go on (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await store.put_answer("L", answer("a9", who="c9")))[0] == STORED  # the resend
    await store.close()
