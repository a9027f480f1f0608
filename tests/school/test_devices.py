"""Classroom devices, the room's plan, auto-end, join codes and the teacher's day, on a
real server (SQLite school database) with the feature's clock moved by the test."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from signaling.auth import verify_token
from signaling.school import devices as dev
from signaling.school import scheduler
from signaling.school.devices_api import DevicesFeature
from tests.helpers import eventually, start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

TZ = "Asia/Shanghai"
TERM = {"id": "t1", "name": "2026秋季学期", "starts": "2026-09-01", "ends": "2027-01-15",
        "holidays": ["2026-09-14"]}  # a Monday
DIRECTORY: list[tuple[str, dict[str, Any]]] = [
    ("school", {"id": "city", "name": "城区小学"}),
    ("school", {"id": "rural1", "name": "山村小学"}),
    ("classroom", {"id": "cityA", "school_id": "city", "name": "城区一班"}),
    ("classroom", {"id": "ruralA", "school_id": "rural1", "name": "山村一班"}),
    ("teacher", {"id": "wang", "school_id": "city", "name": "王老师"}),
    ("term", TERM),
    ("slot", {"id": "math3", "term_id": "t1", "subject": "数学", "grade": "三年级",
              "teacher_id": "wang", "main_classroom_id": "cityA",
              "receiving_classroom_ids": ["ruralA"], "weekday": 0, "starts": "08:00",
              "ends": "08:40"}),
]
MON = "2026-09-07"


def at(date: str, hhmm: str, seconds: float = 0.0) -> float:
    return scheduler.local_time(date, hhmm, TZ) + seconds


class Clock:
    def __init__(self) -> None:
        self.now = at(MON, "07:00")

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server():
    srv = await start_server(timezone=TZ)
    for kind, doc in DIRECTORY:
        await srv.node.school_db.put(kind, doc["id"], doc)
    feature = next(f for f in srv.node.features if isinstance(f, DevicesFeature))
    srv.clock = feature.clock = Clock()
    srv.feature = feature
    srv.http = aiohttp.ClientSession()
    srv.admin = {"Authorization": "Bearer " + srv.token("admin", lesson="*")}
    srv.city = {"Authorization": "Bearer " + srv.token("school_admin", lesson="*",
                                                        school="city")}
    srv.rural = {"Authorization": "Bearer " + srv.token("school_admin", lesson="*",
                                                         school="rural1")}
    yield srv
    await srv.http.close()
    await srv.close()


async def call(srv, method: str, path: str, headers: dict[str, str] | None = None,
               body: Any = None) -> tuple[int, Any]:
    async with srv.http.request(method, srv.base_url + path, headers=headers or {},
                                json=body) as resp:
        return resp.status, await resp.json()


async def new_code(srv) -> tuple[str, str]:
    status, body = await call(srv, "POST", "/api/pairing")
    assert status == 201, body
    assert len(body["code"]) == 6 and body["code"].isdigit()
    assert body["expires_at"] == pytest.approx(srv.clock() + dev.PAIRING_TTL)
    return body["code"], body["poll_token"]


async def paired(srv, classroom: str = "ruralA", admin: str = "admin") -> str:
    code, poll = await new_code(srv)
    status, device = await call(srv, "POST", "/api/devices", getattr(srv, admin),
                                {"code": code, "classroom_id": classroom, "name": "TV"})
    assert status == 201, device
    status, body = await call(srv, "GET", f"/api/pairing/{code}/status",
                              {"X-Pairing-Token": poll})
    assert (status, body["state"], body["device_id"]) == (200, "paired", device["id"])
    return dev.credential(device["id"], poll)


def device_auth(cred: str) -> dict[str, str]:
    return {"Authorization": "Device " + cred}


async def test_pairing_is_single_use_rotates_and_revokes(server):
    srv = server
    srv.clock.now = at(MON, "07:00")
    code, poll = await new_code(srv)
    status, body = await call(srv, "GET", f"/api/pairing/{code}/status",
                              {"X-Pairing-Token": poll})
    assert (status, body["state"]) == (200, "waiting")
    status, body = await call(srv, "GET", f"/api/pairing/{code}/status",
                              {"X-Pairing-Token": "not-the-token"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, device = await call(srv, "POST", "/api/devices", srv.rural,
                                {"code": code, "classroom_id": "ruralA", "name": "一班电视"})
    assert status == 201 and device["school_id"] == "rural1" and "secret_hash" not in device
    # the same code again, by the other school too: used (one device, one school)
    for who in (srv.rural, srv.city):
        status, body = await call(srv, "POST", "/api/devices", who,
                                  {"code": code, "classroom_id": "cityA"})
        assert (status, body["error"]["code"]) == (404, "not_found"), body
    status, body = await call(srv, "GET", f"/api/pairing/{code}/status",
                              {"X-Pairing-Token": poll})
    assert body["device_id"] == device["id"]
    status, _ = await call(srv, "GET", f"/api/pairing/{code}/status", {"X-Pairing-Token": poll})
    assert status == 404  # delivered once, then gone
    old = dev.credential(device["id"], poll)
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(old))
    assert status == 200 and "credential" not in plan and plan["device_id"] == device["id"]
    # a day later the secret is replaced; the old one lasts the overlap only
    srv.clock.now += dev.ROTATE_AFTER + 1
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(old))
    assert status == 200 and plan["credential"].startswith(device["id"] + ".")
    new = plan["credential"]
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(new))
    assert status == 200 and "credential" not in plan
    srv.clock.now += dev.OVERLAP + 1
    status, body = await call(srv, "GET", "/api/room/next", device_auth(old))
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(new))
    assert status == 200
    # the console sees it online; another school's admin does not see it at all
    status, body = await call(srv, "GET", "/api/devices?school=rural1", srv.rural)
    assert [d["id"] for d in body["devices"]] == [device["id"]] and body["devices"][0]["online"]
    status, body = await call(srv, "GET", f"/api/devices/{device['id']}", srv.city)
    assert status == 404
    status, body = await call(srv, "GET", "/api/devices", srv.city)
    assert device["id"] not in [d["id"] for d in body["devices"]]
    status, body = await call(srv, "DELETE", f"/api/devices/{device['id']}", srv.city)
    assert status == 404
    status, body = await call(srv, "DELETE", f"/api/devices/{device['id']}", srv.rural)
    assert status == 200 and body["revoked_at"] and not body["online"]
    status, body = await call(srv, "GET", "/api/room/next", device_auth(new))
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    status, body = await call(srv, "GET", "/api/room/next")
    assert (status, body["error"]["code"]) == (401, "not_authenticated")


async def test_codes_expire_and_guesses_are_limited(server):
    srv = server
    srv.clock.now = at(MON, "06:00")
    code, _ = await new_code(srv)
    srv.clock.now += dev.PAIRING_TTL + 1
    status, body = await call(srv, "POST", "/api/devices", srv.admin,
                              {"code": code, "classroom_id": "ruralA"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert await srv.feature.sweep() >= 1
    assert await srv.node.school_db.get("pairing", code) is None
    code, _ = await new_code(srv)
    status, body = await call(srv, "POST", "/api/devices", srv.admin,
                              {"code": code, "classroom_id": "nowhere"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(srv, "POST", "/api/devices", srv.city,
                              {"code": code, "classroom_id": "ruralA"})
    assert status == 404  # another school's classroom
    status, body = await call(srv, "POST", "/api/devices", srv.admin,
                              {"code": "12a", "classroom_id": "ruralA"})
    assert (status, body["error"]["code"]) == (400, "bad_message")
    fake = {"now": 1000.0}
    srv.feature.guesses = dev.Attempts(10, 600.0, clock=lambda: fake["now"])
    try:
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        codes = []
        for _ in range(12):
            status, body = await call(srv, "POST", "/api/devices", srv.admin,
                                      {"code": wrong, "classroom_id": "ruralA"})
            codes.append(status)
        assert codes == [404] * 10 + [429] * 2, codes
        # even the right code waits now; after the window it works
        status, _ = await call(srv, "POST", "/api/devices", srv.admin,
                               {"code": code, "classroom_id": "ruralA"})
        assert status == 429
        fake["now"] += 601
        status, _ = await call(srv, "POST", "/api/devices", srv.admin,
                               {"code": code, "classroom_id": "ruralA"})
        assert status == 201
    finally:
        srv.feature.guesses = dev.Attempts(10, 600.0)


async def test_room_plan_countdown_token_holiday_and_join_code(server):
    srv = server
    srv.clock.now = at(MON, "07:00")
    cred = await paired(srv, "ruralA")
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(cred))
    assert plan["current"] is None and plan["next"]["lesson_id"] == "math3-20260907"
    assert plan["next"]["teacher"] == "王老师" and plan["next"]["school"] == "城区小学"
    assert plan["poll_after"] == 30.0
    srv.clock.now = at(MON, "07:55")
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(cred))
    cur = plan["current"]
    assert (cur["lesson_id"], cur["state"], cur["subject"]) == ("math3-20260907", "countdown",
                                                               "数学")
    claims = verify_token(srv.secret, cur["token"])
    assert (claims.role.value, claims.lesson, claims.school) == ("classroom", cur["lesson_id"],
                                                                 "rural1")
    assert claims.exp - claims.iat >= at(MON, "08:50") - srv.clock.now  # end + overrun
    lesson = await srv.node.hub.store.get_lesson("math3-20260907")
    assert (lesson.title, lesson.teacher, lesson.school) == ("数学", "王老师", "city")
    assert cur["join"]["qr"].startswith("data:image/svg+xml")
    join = cur["join"]["code"]
    # a student joins with the TV's code; the token is of the lesson and the TV's school
    status, body = await call(srv, "POST", "/api/join", body={"code": join.lower()})
    assert status == 201 and body["page"] == "/answer/math3-20260907"
    student = verify_token(srv.secret, body["token"])
    assert (student.role.value, student.lesson, student.school) == (
        "student", "math3-20260907", "rural1")
    # the teacher ended it: back to idle; the next Monday is a holiday: the one after
    await srv.node.hub.set_state("math3-20260907", "live")
    await srv.node.hub.set_state("math3-20260907", "ended")
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(cred))
    assert plan["current"] is None and plan["next"]["lesson_id"] == "math3-20260921"
    # the code expires at the end plus the overrun
    srv.clock.now = at(MON, "08:50", 1)
    status, body = await call(srv, "POST", "/api/join", body={"code": join})
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_auto_end_warns_then_ends(server):
    srv = server
    hub = srv.node.hub
    heard: list[tuple[str, dict[str, Any]]] = []
    hub.add_listener(lambda lesson, msg: heard.append((lesson, msg)))
    lesson_id = "math3-20260928"
    srv.clock.now = at("2026-09-28", "08:00")
    await scheduler.ensure_lesson(hub, {"lesson_id": lesson_id, "title": "数学",
                                        "teacher": "王老师", "school_id": "city"})
    await hub.set_state(lesson_id, "live")
    auto = srv.feature.auto_end
    srv.clock.now = at("2026-09-28", "08:40")  # the end on paper: the overrun runs
    assert await auto.check() == []
    srv.clock.now = at("2026-09-28", "08:46")  # 4 minutes left
    assert await auto.check() == []

    def warnings() -> list[dict[str, Any]]:
        return [m for lesson, m in heard if lesson == lesson_id and m["type"] == "lesson-ending"]

    await eventually(warnings, timeout=5)
    warn = warnings()
    assert len(warn) == 1 and warn[0]["ends_at"] == at("2026-09-28", "08:50")
    assert warn[0]["seconds_left"] == 240
    await auto.check()
    assert len([m for _, m in heard if m["type"] == "lesson-ending"]) == 1  # once
    assert (await hub.store.get_lesson(lesson_id)).state == "live"
    srv.clock.now = at("2026-09-28", "08:50")
    assert await auto.check() == [lesson_id]
    assert (await hub.store.get_lesson(lesson_id)).state == "ended"


async def test_teacher_day_link_gives_per_lesson_tokens(server):
    srv = server
    srv.clock.now = at("2026-10-05", "07:30")
    status, body = await call(srv, "POST", "/api/teacher/links", srv.rural,
                              {"teacher_id": "wang"})
    assert status == 404  # another school's teacher
    status, body = await call(srv, "POST", "/api/teacher/links", srv.city,
                              {"teacher_id": "wang"})
    assert status == 201
    day = {"Authorization": "Bearer " + body["token"]}
    status, today = await call(srv, "GET", "/api/teacher/today", day)
    assert status == 200 and [x["lesson_id"] for x in today["lessons"]] == ["math3-20261005"]
    claims = verify_token(srv.secret, today["lessons"][0]["token"])
    assert (claims.role.value, claims.lesson) == ("teacher", "math3-20261005")
    # a day token opens no lesson and a lesson token is no day token
    status, _ = await call(srv, "GET", "/api/lessons/math3-20261005", day)
    assert status == 403
    lesson_tok = {"Authorization": "Bearer " + today["lessons"][0]["token"]}
    status, body = await call(srv, "GET", "/api/teacher/today", lesson_tok)
    assert (status, body["error"]["code"]) == (404, "not_found")
    # the teacher asks a join code for the main classroom
    status, body = await call(srv, "POST", "/api/lessons/math3-20261005/join-code", lesson_tok,
                              {})
    assert status == 201 and len(body["code"]) == 6 and body["url"].endswith(body["code"])


async def test_pairing_requests_are_limited_per_address(server):
    srv = server
    srv.feature.pairings = dev.Attempts(20, 600.0)
    statuses = [(await call(srv, "POST", "/api/pairing"))[0] for _ in range(22)]
    srv.feature.pairings = dev.Attempts(20, 600.0)
    assert statuses == [201] * 20 + [429] * 2


async def hello(srv, token: str, lesson: str) -> dict[str, Any]:
    async with srv.http.ws_connect(srv.base_url.replace("http", "ws") + "/ws") as ws:
        await ws.send_json({"type": "hello", "token": token, "lesson": lesson})
        while True:
            msg = await ws.receive_json(timeout=5)
            if msg["type"] in ("welcome", "error"):
                return msg


async def test_revoked_device_and_day_tokens_are_refused_at_hello(server):
    srv = server
    srv.clock.now = at("2026-10-12", "07:55")
    cred = await paired(srv, "ruralA")
    status, plan = await call(srv, "GET", "/api/room/next", device_auth(cred))
    lesson, token = plan["current"]["lesson_id"], plan["current"]["token"]
    assert (await hello(srv, token, lesson))["type"] == "welcome"
    status, _ = await call(srv, "DELETE", f"/api/devices/{cred.split('.')[0]}", srv.admin)
    assert status == 200
    refused = await hello(srv, token, lesson)  # the token has not expired: the device has
    assert (refused["type"], refused["code"]) == ("error", "invalid_token")
    status, body = await call(srv, "POST", "/api/teacher/links", srv.admin,
                              {"teacher_id": "wang"})
    refused = await hello(srv, body["token"], "@today")
    assert (refused["type"], refused["code"]) == ("error", "wrong_lesson")
