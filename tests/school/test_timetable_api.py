"""Timetable routes on a real server (SQLite school database): slots and 409 naming the
other, references, school scope, CSV import in UTF-8/BOM/GBK with per-row errors and
nothing half-imported, dry run, export round trip."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.helpers import start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

TERM = {"id": "t1", "name": "2026秋季学期", "starts": "2026-09-01", "ends": "2027-01-15",
        "holidays": ["2026-10-01", "2026-10-02"]}
DIRECTORY: list[tuple[str, dict[str, Any]]] = [
    ("school", {"id": "city", "name": "城区小学", "kind": "primary"}),
    ("school", {"id": "rural1", "name": "山村小学", "kind": "primary"}),
    ("school", {"id": "far", "name": "别的小学", "kind": "primary"}),
    ("cluster", {"id": "c1", "name": "集群一", "school_ids": ["city", "rural1"]}),
    ("classroom", {"id": "cityA", "school_id": "city", "name": "城区一班"}),
    ("classroom", {"id": "cityB", "school_id": "city", "name": "城区二班"}),
    ("classroom", {"id": "ruralA", "school_id": "rural1", "name": "山村一班"}),
    ("classroom", {"id": "ruralB", "school_id": "rural1", "name": "山村二班"}),
    ("classroom", {"id": "farA", "school_id": "far", "name": "别处一班"}),
    ("teacher", {"id": "wang", "school_id": "city", "name": "王老师"}),
    ("teacher", {"id": "li", "school_id": "city", "name": "李老师"}),
    ("teacher", {"id": "zhao", "school_id": "rural1", "name": "赵老师"}),
]


def slot(sid: str, **kw: Any) -> dict[str, Any]:
    doc = {"id": sid, "term_id": "t1", "subject": "数学", "grade": "三年级",
           "teacher_id": "wang", "main_classroom_id": "cityA", "cluster_id": "c1",
           "receiving_classroom_ids": ["ruralA"], "weekday": 0, "starts": "08:00",
           "ends": "08:40"}
    doc.update(kw)
    return doc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server():
    srv = await start_server()
    db = srv.node.school_db
    for kind, doc in DIRECTORY:
        await db.put(kind, doc["id"], doc)
    await db.put("term", "t1", TERM)
    http = aiohttp.ClientSession()
    srv.http = http
    srv.admin = {"Authorization": "Bearer " + srv.token("admin", lesson="*")}
    srv.city = {"Authorization": "Bearer " + srv.token("school_admin", lesson="*",
                                                        school="city")}
    srv.rural = {"Authorization": "Bearer " + srv.token("school_admin", lesson="*",
                                                         school="rural1")}
    yield srv
    await http.close()
    await srv.close()


@pytest_asyncio.fixture(loop_scope="module")
async def clean(server):
    db = server.node.school_db
    for s in await db.list("slot"):
        await db.delete("slot", s["id"])
    return server


async def call(srv, method: str, path: str, headers: dict, **kw: Any) -> tuple[int, Any]:
    async with srv.http.request(method, srv.base_url + path, headers=headers, **kw) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.read()


async def test_slots_conflicts_references_and_week(clean) -> None:
    srv = clean
    st, body = await call(srv, "POST", "/api/timetable/slots", srv.admin, json=slot("m1"))
    assert st == 201, body
    # the teacher is busy: 409 naming the other slot
    st, body = await call(srv, "POST", "/api/timetable/slots", srv.admin,
                          json=slot("m2", main_classroom_id="cityB", receiving_classroom_ids=[],
                                    starts="08:20", ends="09:00"))
    assert st == 409 and body["error"]["code"] == "conflict"
    assert body["error"]["other"]["id"] == "m1" and "teacher wang" in body["error"]["message"]
    # a receiving classroom taken by another teacher's slot
    st, body = await call(srv, "POST", "/api/timetable/slots", srv.admin,
                          json=slot("m3", teacher_id="zhao", main_classroom_id="ruralB",
                                    receiving_classroom_ids=["ruralA"]))
    assert st == 409 and body["error"]["other"]["id"] == "m1"
    # unknown classroom / teacher named; a receiving classroom outside the cluster
    for bad, word in ((slot("m4", main_classroom_id="nope"), "nope"),
                      (slot("m4", teacher_id="ghost"), "ghost"),
                      (slot("m4", receiving_classroom_ids=["farA"]), "farA")):
        st, body = await call(srv, "POST", "/api/timetable/slots", srv.admin, json=bad)
        assert st == 400 and word in body["error"]["message"], body
    st, body = await call(srv, "POST", "/api/timetable/slots", srv.admin,
                          json=slot("m5", weekday=None, date="2026-10-01"))
    assert st == 400 and "holiday" in body["error"]["message"]
    # moving m1 onto itself is fine; the week has its occurrence, none on the holiday
    st, body = await call(srv, "PUT", "/api/timetable/slots/m1", srv.admin,
                          json=slot("m1", starts="08:10", ends="08:50"))
    assert st == 200 and body["starts"] == "08:10"
    st, week = await call(srv, "GET", "/api/timetable?week=2026-09-09", srv.admin)
    assert st == 200 and week["week"] == "2026-09-07"
    assert [o["lesson_id"] for o in week["occurrences"]] == ["m1-20260907"]
    assert week["conflicts"] == []
    st, body = await call(srv, "DELETE", "/api/terms/t1", srv.admin)
    assert st == 409


async def test_school_scope(clean) -> None:
    srv = clean
    assert (await call(srv, "POST", "/api/timetable/slots", srv.admin, json=slot("m1")))[0] == 201
    # the rural admin sees the slot (its classroom receives) but may not change it
    st, week = await call(srv, "GET", "/api/timetable?week=2026-09-07", srv.rural)
    assert [s["id"] for s in week["slots"]] == ["m1"]
    st, body = await call(srv, "PUT", "/api/timetable/slots/m1", srv.rural, json=slot("m1"))
    assert st == 403
    st, body = await call(srv, "POST", "/api/timetable/slots", srv.rural,
                          json=slot("m2", main_classroom_id="cityB", teacher_id="li"))
    assert st == 403
    # an admin of another school sees nothing of it
    far = {"Authorization": "Bearer " + srv.token("school_admin", lesson="*", school="far")}
    st, week = await call(srv, "GET", "/api/timetable?week=2026-09-07", far)
    assert st == 200 and week["slots"] == []
    st, body = await call(srv, "DELETE", "/api/timetable/slots/m1", far)
    assert st == 404
    # the city admin edits its own; a teacher token is refused by the table
    st, body = await call(srv, "PUT", "/api/timetable/slots/m1", srv.city,
                          json=slot("m1", subject="语文"))
    assert st == 200 and body["subject"] == "语文"
    teacher = {"Authorization": "Bearer " + srv.token("teacher")}
    assert (await call(srv, "GET", "/api/timetable", teacher))[0] == 403
    assert (await call(srv, "POST", "/api/terms", srv.city, json=TERM))[0] == 403


CSV_ZH = ("学期,星期,日期,开始,结束,学科,年级,主讲教师,主讲课堂,接收课堂,集群\n"
          "2026秋季学期,一,,08:00,08:40,数学,三年级,王老师,城区一班,山村一班、山村二班,集群一\n"
          "t1,周二,,9:00,9:40,语文,三年级,li,cityB,ruralA,c1\n"
          "t1,,2026/09/09,10:00,10:40,英语,四年级,zhao,ruralB,,\n")


async def test_csv_import_encodings_errors_and_round_trip(clean) -> None:
    srv = clean
    db = srv.node.school_db
    for encoded in (CSV_ZH.encode("utf-8"), b"\xef\xbb\xbf" + CSV_ZH.encode("utf-8"),
                    CSV_ZH.encode("gbk")):
        st, body = await call(srv, "POST", "/api/timetable/import?dry_run=1",
                              {**srv.admin, "Content-Type": "text/csv"}, data=encoded)
        assert st == 200 and body == {"dry_run": True, "rows": 3, "created": 3, "updated": 0}, body
    assert await db.list("slot") == []  # a dry run writes nothing
    # errors in rows 3 and 4 (unknown classroom, a conflict with row 2): nothing imported
    broken = CSV_ZH + ("t1,一,,08:20,09:00,美术,三年级,李老师,城区九班,,\n"
                       "t1,1,,08:30,09:10,音乐,三年级,li,cityB,ruralB,c1\n")
    st, body = await call(srv, "POST", "/api/timetable/import", srv.admin,
                          data=broken.encode("gbk"))
    assert st == 400, body
    rows = {(e["row"], e["column"]) for e in body["error"]["rows"]}
    assert (5, "主讲课堂") in rows and any(r == 6 for r, _ in rows), body
    conflict = next(e for e in body["error"]["rows"] if e["row"] == 6)
    assert "row 2" in conflict["message"] and conflict["other"]["subject"] == "数学"
    assert await db.list("slot") == []
    bad_enc = "学期,星期\n".encode("utf-16-le")
    st, body = await call(srv, "POST", "/api/timetable/import", srv.admin, data=bad_enc)
    assert st == 400
    # the real import, then export -> delete -> import gives the same slots
    st, body = await call(srv, "POST", "/api/timetable/import", srv.admin,
                          data=CSV_ZH.encode("utf-8"))
    assert st == 200 and body["created"] == 3, body
    before = sorted(await db.list("slot"), key=lambda s: s["id"])
    assert {s["main_classroom_id"] for s in before} == {"cityA", "cityB", "ruralB"}
    assert next(s for s in before if s["main_classroom_id"] == "cityA")[
        "receiving_classroom_ids"] == ["ruralA", "ruralB"]
    st, exported = await call(srv, "GET", "/api/timetable/export.csv", srv.admin)
    assert st == 200 and exported.startswith(b"\xef\xbb\xbf")
    for s in before:
        await db.delete("slot", s["id"])
    st, body = await call(srv, "POST", "/api/timetable/import", srv.admin, data=exported)
    assert st == 200 and body["created"] == 3
    assert sorted(await db.list("slot"), key=lambda s: s["id"]) == before
    # the same file again updates, creates nothing
    st, body = await call(srv, "POST", "/api/timetable/import", srv.admin,
                          data=CSV_ZH.encode("utf-8"))
    assert st == 200 and body == {"dry_run": False, "rows": 3, "created": 0, "updated": 3}
    # a school admin may not import another school's slots
    st, body = await call(srv, "POST", "/api/timetable/import", srv.rural,
                          data=CSV_ZH.encode("utf-8"))
    assert st == 400 and body["error"]["rows"][0]["row"] == 2
