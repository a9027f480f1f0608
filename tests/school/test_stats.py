"""Usage statistics: a scripted week (held vs scheduled, on time, attendance, tiers,
practice), grouping and school scope; one lesson played on a real server through its
sockets reaches GET /api/stats and the CSV."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest

from classroom_client import ClassroomClient
from signaling.school import stats as st
from signaling.school import timetable as tt
from signaling.school.usage import UsageFeature, usage_id
from tests.helpers import eventually, start_server

TZ = "Asia/Shanghai"
TERM = {"id": "t1", "name": "秋", "starts": "2026-09-01", "ends": "2026-12-31",
        "holidays": ["2026-09-16"]}
CLASSROOMS = {"cityA": {"id": "cityA", "school_id": "city"},
              "ruralA": {"id": "ruralA", "school_id": "rural1"},
              "ruralB": {"id": "ruralB", "school_id": "rural2"}}


def slot(sid: str, weekday: int, **kw: Any) -> dict[str, Any]:
    return tt.normalize_slot({"id": sid, "term_id": "t1", "subject": "数学", "grade": "三",
                              "teacher_id": "wang", "main_classroom_id": "cityA",
                              "cluster_id": "c1", "receiving_classroom_ids": ["ruralA", "ruralB"],
                              "weekday": weekday, "starts": "08:00", "ends": "08:40", **kw})


def at(day: str, hhmm: str) -> float:
    h, m = map(int, hhmm.split(":"))
    d = dt.date.fromisoformat(day)
    return dt.datetime(d.year, d.month, d.day, h, m, tzinfo=tt.zone(TZ)).timestamp()


def usage(lesson: str, start: str, end: str, rooms: dict[str, tuple[float, dict]],
          node: str = "n1", **kw: Any) -> dict[str, Any]:
    day = f"{lesson[-8:-4]}-{lesson[-4:-2]}-{lesson[-2:]}"
    return {"lesson_id": lesson, "node": node, "started_at": at(day, start),
            "ended_at": at(day, end),
            "classrooms": {sub: {"school": "", "joins": 1, "seconds": sec, "tiers": tiers}
                           for sub, (sec, tiers) in rooms.items()}, **kw}


def scripted_week() -> st.Facts:
    """Mon..Fri 08:00 maths (week of 2026-09-14; Wed 16th is a holiday), Tue 10:00 语文."""
    slots = {s["id"]: s for s in [slot(f"m{d}", d) for d in range(5)]
             + [slot("y1", 1, subject="语文", teacher_id="li", starts="10:00", ends="10:40")]}
    docs = [
        # Monday on time; ruralA 40 min (30 high, 10 audio-only), ruralB absent
        usage("m0-20260914", "08:01", "08:41", {"ruralA": (2400, {"high": 1800, "audio": 600})},
              rounds={"practice": 2, "test": 1},
              answers={"classrooms": {"ruralA": 3}, "students": {"rural1": 17}},
              quiz_read_at=1.0),
        # Tuesday 12 minutes late, both classrooms, spread over two nodes
        usage("m1-20260915", "08:12", "08:40", {"ruralA": (600, {"mid": 600})}),
        usage("m1-20260915", "08:12", "08:40", {"ruralA": (300, {"low": 300}),
                                                "ruralB": (1200, {"high": 1200})}, node="n2"),
        # Thursday on time, nobody joined; Friday not held; 语文 Tuesday held on time
        usage("m3-20260917", "07:58", "08:40", {}),
        usage("y1-20260915", "10:00", "10:40", {"ruralB": (2400, {"high": 2400})}),
    ]
    now = at("2026-09-18", "12:00")
    return st.build_facts(1, slots, {"t1": tt.normalize_term(TERM)}, CLASSROOMS, docs, TZ, now)


def wk(**kw: Any) -> st.Query:
    return st.Query("2026-09-14", "2026-09-20", **kw)


def test_scripted_week_figures() -> None:
    facts = scripted_week()
    week = st.Query("2026-09-14", "2026-09-20")
    t = st.compute(facts, week, None)["totals"]
    assert t["scheduled"] == 5  # Mon Tue Thu Fri maths + Tue 语文 (Wed is a holiday)
    assert t["held"] == 4 and t["held_rate"] == 0.8
    assert t["on_time"] == 3  # Tuesday's maths went live 12 minutes late
    assert t["classrooms_expected"] == 10 and t["classrooms_joined"] == 4
    assert t["attendance_rate"] == 0.4
    assert t["minutes_connected"] == pytest.approx((2400 + 900 + 1200 + 2400) / 60, abs=0.1)
    assert t["tier_minutes"] == {"audio": 10.0, "high": 90.0, "low": 5.0, "mid": 10.0}
    assert t["audio_only_minutes"] == 10.0
    assert t["practice_rounds"] == 2 and t["test_rounds"] == 1
    assert t["classroom_answers"] == 3 and t["student_answers"] == 17
    assert t["minutes_live"] == pytest.approx(40 + 28 + 42 + 40, abs=0.1)
    # by teacher: 王 4 scheduled 3 held; 李 1/1
    by = {g["key"]: g for g in st.compute(facts, wk(group_by="teacher"), None)["groups"]}
    assert (by["wang"]["scheduled"], by["wang"]["held"]) == (4, 3)
    assert (by["li"]["scheduled"], by["li"]["held"]) == (1, 1)
    days = st.compute(facts, wk(group_by="day"), None)["groups"]
    assert [g["key"] for g in days] == ["2026-09-14", "2026-09-15", "2026-09-17", "2026-09-18"]
    # by school: every school sees the lesson once, its own classrooms only
    schools = {g["key"]: g for g in st.compute(facts, wk(group_by="school"),
                                               None)["groups"]}
    assert schools["rural1"]["classrooms_expected"] == 5
    assert schools["rural1"]["classrooms_joined"] == 2
    assert schools["city"]["classrooms_expected"] == 0 and schools["city"]["scheduled"] == 5
    # scope: a rural2 admin sees only rural2's classrooms, and nothing of another's filter
    scoped = st.compute(facts, week, {"rural2"})["totals"]
    assert scoped["classrooms_expected"] == 5 and scoped["classrooms_joined"] == 2
    assert scoped["student_answers"] == 0
    assert st.compute(facts, wk(school="rural1"), {"rural2"})["totals"]["scheduled"] == 0
    # the CSV has one row per group and no per-student column
    rows = st.to_csv_rows(st.compute(facts, wk(group_by="subject"), None))
    assert rows[0][0] == "key" and [r[0] for r in rows[1:]] == ["数学", "语文"]
    assert not any("student" in c and "answers" not in c for c in rows[0])


async def test_a_played_lesson_reaches_the_stats_api() -> None:
    srv = await start_server()
    http = aiohttp.ClientSession()
    clients: list[ClassroomClient] = []
    try:
        db = srv.node.school_db
        today = dt.datetime.now(tt.zone(srv.node.config.timezone)).date()
        term = {"id": "t1", "name": "now", "starts": (today - dt.timedelta(days=7)).isoformat(),
                "ends": (today + dt.timedelta(days=7)).isoformat(), "holidays": []}
        await db.put("term", "t1", term)
        for c in CLASSROOMS.values():
            await db.put("classroom", c["id"], c)
        s = slot("live1", today.weekday(), starts="00:00", ends="23:59")
        await db.put("slot", "live1", s)
        lesson = tt.lesson_id_of("live1", today)
        teacher = ClassroomClient(srv.base_url, srv.token("teacher", lesson, sub="wang"))
        await teacher.connect()
        clients.append(teacher)
        await teacher.start_lesson()
        room = ClassroomClient(srv.base_url, srv.token("classroom", lesson, sub="ruralA",
                                                       school="rural1"))
        await room.connect()
        clients.append(room)
        await room.close()
        await teacher.end_lesson()
        usage_feature = next(f for f in srv.node.features if isinstance(f, UsageFeature))
        await usage_feature.flush()
        doc = await db.get("usage", usage_id(lesson, srv.node.config.node_id))
        assert doc is not None and doc["classrooms"]["ruralA"]["joins"] == 1
        assert doc["started_at"] is not None and doc["ended_at"] >= doc["started_at"]
        # the ended lesson is dropped from memory once written; a late join adds to it
        await eventually(lambda: lesson not in usage_feature.lessons)
        late = ClassroomClient(srv.base_url, srv.token("classroom", lesson, sub="ruralA",
                                                       school="rural1"))
        await late.connect()
        await late.close()
        await usage_feature.flush()
        doc = await db.get("usage", usage_id(lesson, srv.node.config.node_id))
        assert doc["classrooms"]["ruralA"]["joins"] == 2 and doc["started_at"] is not None
        admin = {"Authorization": "Bearer " + srv.token("admin", "*")}
        async with http.get(srv.base_url + f"/api/stats?group_by=school&from={today}&to={today}",
                            headers=admin) as r:
            body = await r.json()
        assert r.status == 200, body
        t = body["totals"]
        assert (t["scheduled"], t["held"], t["classrooms_expected"], t["classrooms_joined"]) \
            == (1, 1, 2, 1)
        assert {g["key"] for g in body["groups"]} == {"city", "rural1", "rural2"}
        far = {"Authorization": "Bearer " + srv.token("school_admin", "*", school="far")}
        async with http.get(srv.base_url + "/api/stats", headers=far) as r:
            assert (await r.json())["totals"]["scheduled"] == 0
        async with http.get(srv.base_url + f"/api/stats.csv?group_by=day&from={today}",
                            headers=admin) as r:
            text = (await r.read()).decode("utf-8-sig")
        assert r.status == 200 and text.splitlines()[1].startswith(today.isoformat())
        async with http.get(srv.base_url + "/api/stats?group_by=pupil", headers=admin) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_message"
    finally:
        for c in clients:
            await c.close()
        await http.close()
        await srv.close()
