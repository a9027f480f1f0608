"""Timetable rules: recurrence in a term without holidays, wall time across a clock
change, conflicts (and the guard that re-checks them inside SchoolDB.apply)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from signaling.errors import ClassroomError, ErrorCode
from signaling.school import timetable as tt
from signaling.school.db_sqlite import SqliteSchoolDB

TERM = tt.normalize_term({"id": "t1", "name": "2026秋", "starts": "2026-09-01",
                          "ends": "2026-09-30", "holidays": ["2026-09-15"]})


def slot(sid: str, **kw: object) -> dict:
    doc = {"id": sid, "term_id": "t1", "subject": "数学", "grade": "三年级",
           "teacher_id": "teach1", "main_classroom_id": "roomA",
           "receiving_classroom_ids": [], "weekday": 1, "starts": "08:00", "ends": "08:40"}
    doc.update(kw)
    return tt.normalize_slot(doc)


def test_weekly_recurrence_skips_holidays_and_stays_in_term() -> None:
    days = tt.slot_dates(slot("s1"), TERM)  # Tuesdays of September 2026
    assert [d.isoformat() for d in days] == ["2026-09-01", "2026-09-08", "2026-09-22",
                                             "2026-09-29"]
    week = tt.slot_dates(slot("s1"), TERM, dt.date(2026, 9, 7), dt.date(2026, 9, 13))
    assert week == [dt.date(2026, 9, 8)]
    one = slot("s2", weekday=None, date="2026-10-02")
    assert tt.slot_dates(one, TERM) == []  # outside the term


def test_occurrence_in_local_wall_time_and_across_a_clock_change() -> None:
    occ = tt.occurrence(slot("s1"), dt.date(2026, 9, 8), "Asia/Shanghai")
    assert occ.lesson_id == "s1-20260908"
    assert occ.starts_at == dt.datetime(2026, 9, 8, 0, 0, tzinfo=dt.UTC).timestamp()
    assert occ.ends_at - occ.starts_at == 40 * 60
    # Berlin leaves summer time on 2026-10-25: 08:00 local is 07:00 UTC after, 06:00 before
    s = slot("s3", weekday=6)
    before = tt.occurrence(s, dt.date(2026, 10, 18), "Europe/Berlin")
    after = tt.occurrence(s, dt.date(2026, 10, 25), "Europe/Berlin")
    assert dt.datetime.fromtimestamp(before.starts_at, dt.UTC).hour == 6
    assert dt.datetime.fromtimestamp(after.starts_at, dt.UTC).hour == 7
    assert after.starts_at - before.starts_at == 7 * 86400 + 3600
    # a lesson spanning the night's change itself (02:00-04:00 on 2026-03-29, spring forward)
    night = tt.occurrence(slot("s4", weekday=6, starts="01:30", ends="03:30"),
                          dt.date(2026, 3, 29), "Europe/Berlin")
    assert night.ends_at - night.starts_at == 3600  # 2 h of wall clock, 1 h of real time


def test_shape_errors_name_the_field() -> None:
    for bad, field in (({"starts": "8"}, "starts"), ({"ends": "07:00"}, "ends"),
                       ({"weekday": 7}, "weekday"), ({"weekday": None}, "weekday"),
                       ({"teacher_id": "bad id"}, "teacher_id"),
                       ({"receiving_classroom_ids": ["roomA"]}, "receiving_classroom_ids")):
        with pytest.raises(ClassroomError) as err:
            slot("s1", **bad)
        assert err.value.code == ErrorCode.BAD_MESSAGE
        assert field in err.value.message


def test_conflicts_by_teacher_and_classroom_name_the_other() -> None:
    stored = {"a": slot("a")}
    terms = {"t1": TERM}
    # same teacher, another classroom, overlapping
    with pytest.raises(tt.SlotConflict) as err:
        tt.check_conflicts([slot("b", main_classroom_id="roomB", starts="08:30",
                                 ends="09:10")], stored, terms)
    assert err.value.code == ErrorCode.CONFLICT and err.value.other["id"] == "a"
    assert "teacher teach1" in err.value.message
    assert err.value.to_json()["other"]["id"] == "a"
    # receiving classroom of one is the main of the other
    stored["r"] = slot("r", teacher_id="t2", main_classroom_id="roomC", cluster_id="c1",
                       receiving_classroom_ids=["roomD"], weekday=2)
    with pytest.raises(tt.SlotConflict) as err:
        tt.check_conflicts([slot("d", teacher_id="t3", main_classroom_id="roomD",
                                 weekday=None, date="2026-09-02")], stored, terms)
    assert err.value.other["id"] == "r" and "classroom roomD" in err.value.message
    # touching ends, another weekday, a one-off on the holiday: no conflict
    tt.check_conflicts([slot("e", starts="08:40", ends="09:20"),
                        slot("f", weekday=3),
                        slot("g", weekday=None, date="2026-09-15")], stored, terms)
    # the slot replacing itself is no conflict; two new ones colliding are
    tt.check_conflicts([slot("a", starts="08:10", ends="08:50")], stored, terms)
    with pytest.raises(tt.SlotConflict):
        tt.check_conflicts([slot("x", weekday=4), slot("y", weekday=4, starts="08:20")],
                           {}, terms)


async def test_concurrent_conflicting_writes_one_wins(tmp_path: Path) -> None:
    db = SqliteSchoolDB(tmp_path / "school.db")
    await db.start()
    try:
        await db.put("term", "t1", TERM)
        a = slot("a")
        b = slot("b", main_classroom_id="roomB")  # same teacher, same time

        async def write(s: dict) -> str:
            # each checked against an empty stored timetable, as two requests would be
            tt.check_conflicts([s], {}, {"t1": TERM})
            await db.apply([("slot", s["id"], s)], [], guard=tt.conflict_guard([s]))
            return s["id"]

        results = await asyncio.gather(write(a), write(b), return_exceptions=True)
        won = [r for r in results if isinstance(r, str)]
        lost = [r for r in results if isinstance(r, tt.SlotConflict)]
        assert len(won) == 1 and len(lost) == 1
        assert [s["id"] for s in await db.list("slot")] == won
        # occurrences_between reads the stored timetable (cached by version)
        start = dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp()
        occ = await tt.occurrences_between(db, start, start + 14 * 86400, tz="Asia/Shanghai")
        assert [o.lesson_id for o in occ] == [f"{won[0]}-20260901", f"{won[0]}-20260908"]
        assert await tt.occurrences_between(db, start, start + 86400 * 14,
                                            classroom_id="nowhere") == []
    finally:
        await db.close()
