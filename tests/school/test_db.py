"""SchoolDB: one suite against both backends (SQLite file, real redis-server)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from signaling.errors import ClassroomError, ErrorCode
from signaling.school.db_sqlite import SqliteSchoolDB
from signaling.school.model import Classroom, School, check_id


async def test_put_get_list_delete_and_version(school_db):
    v0 = await school_db.version()
    await school_db.put("school", "s1", School("s1", "山村小学", kind="primary").to_json())
    await school_db.put("classroom", "c2", Classroom("c2", "s1", "二班").to_json())
    await school_db.put("classroom", "c1", Classroom("c1", "s1", "一班", "whiteboard").to_json())
    await school_db.put("classroom", "c3", Classroom("c3", "s2", "三班").to_json())
    assert await school_db.version() == v0 + 4
    assert School.from_json(await school_db.get("school", "s1")).name == "山村小学"
    assert await school_db.get("school", "nope") is None
    assert [d["id"] for d in await school_db.list("classroom")] == ["c1", "c2", "c3"]
    assert [d["id"] for d in await school_db.list("classroom", school_id="s1")] == ["c1", "c2"]
    assert [d["id"] for d in await school_db.list("classroom", device_kind="whiteboard")] == [
        "c1"]
    assert await school_db.list("classroom", school_id="s1", device_kind="pc") == []
    assert await school_db.delete("classroom", "c3") is True
    assert await school_db.delete("classroom", "c3") is False
    assert [d["id"] for d in await school_db.list("classroom")] == ["c1", "c2"]
    assert await school_db.version() == v0 + 5


async def test_apply_is_all_or_nothing_and_guard_aborts(school_db):
    await school_db.put("slot", "a", {"id": "a", "teacher_id": "t1"})

    async def refuse(db):
        assert await db.get("slot", "a") is not None  # the guard reads the database
        raise ClassroomError(ErrorCode.CONFLICT, "slot a holds t1")

    v = await school_db.version()
    with pytest.raises(ClassroomError) as err:
        await school_db.apply([("slot", "b", {"id": "b"}), ("slot", "c", {"id": "c"})],
                              [("slot", "a")], guard=refuse)
    assert err.value.code is ErrorCode.CONFLICT
    assert [d["id"] for d in await school_db.list("slot")] == ["a"]
    assert await school_db.version() == v
    await school_db.apply([("slot", "b", {"id": "b"}), ("slot", "c", {"id": "c"})],
                          [("slot", "a")])
    assert [d["id"] for d in await school_db.list("slot")] == ["b", "c"]


async def test_concurrent_guarded_writes_never_both_pass(school_db):
    """Two writers each take a free seat if the guard sees it free: only one may win."""

    async def take(name: str) -> bool:
        async def free(db):
            if await db.list("seat"):
                raise ClassroomError(ErrorCode.CONFLICT, "taken")
            await asyncio.sleep(0.01)  # widen the race
        try:
            await school_db.apply([("seat", name, {"id": name})], [], guard=free)
            return True
        except ClassroomError:
            return False

    won = await asyncio.gather(*(take(f"w{i}") for i in range(5)))
    assert sum(won) == 1
    assert len(await school_db.list("seat")) == 1


async def test_unicode_and_nested_documents_round_trip(school_db):
    doc = {"id": "t1", "school_id": "s1", "name": "王老师", "subjects": ["数学", "音乐"],
           "extra": {"n": 1.5, "none": None}}
    await school_db.put("teacher", "t1", doc)
    assert await school_db.get("teacher", "t1") == doc
    assert await school_db.list("teacher", name="王老师") == [doc]


def test_check_id():
    assert check_id("s-1_a", "school") == "s-1_a"
    for bad in ("", "-x", "a b", "x" * 65, "学校", None, 3, "a/b"):
        with pytest.raises(ClassroomError) as err:
            check_id(bad, "school")
        assert err.value.code is ErrorCode.BAD_MESSAGE and "school" in err.value.message


async def test_sqlite_locked_database_is_store_unavailable_and_nothing_lost(tmp_path):
    db = SqliteSchoolDB(tmp_path / "classroom.db")
    db.file.busy_timeout = 0.3
    await db.start()
    await db.put("school", "s1", {"id": "s1", "name": "一"})
    other = sqlite3.connect(tmp_path / "classroom.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the writer lock
    try:
        with pytest.raises(ClassroomError) as err:
            await db.apply([("school", "s2", {"id": "s2"}), ("school", "s3", {"id": "s3"})],
                           [("school", "s1")])
        assert err.value.code is ErrorCode.STORE_UNAVAILABLE
        assert err.value.code.http_status == 503
        assert "locked" in err.value.message
        assert [d["id"] for d in await db.list("school")] == ["s1"]  # WAL: reads go on
    finally:
        other.execute("ROLLBACK")
        other.close()
    await db.put("school", "s2", {"id": "s2"})
    assert [d["id"] for d in await db.list("school")] == ["s1", "s2"]
    await db.close()


async def test_sqlite_full_disk_is_store_unavailable_and_rolled_back(tmp_path):
    db = SqliteSchoolDB(tmp_path / "classroom.db")
    await db.start()
    await db.put("school", "s1", {"id": "s1"})
    pages = await db.file.run(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await db.file.run(lambda c: c.execute(f"PRAGMA max_page_count={pages + 1}"))
    big = [("usage", f"u{i}", {"id": f"u{i}", "pad": "x" * 2000}) for i in range(50)]
    with pytest.raises(ClassroomError) as err:
        await db.apply(big, [("school", "s1")])
    assert err.value.code is ErrorCode.STORE_UNAVAILABLE and "full" in err.value.message
    assert await db.list("usage") == []
    assert [d["id"] for d in await db.list("school")] == ["s1"]
    await db.close()
