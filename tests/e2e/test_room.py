"""A classroom device left alone (docs/school-week.md): /room with no token shows a
pairing code; paired once through the API, it is never touched again. It joins its
scheduled lesson when the teacher starts it (frames decoded in the classroom view it
loads), goes on to the next lesson after the end and joins that one, carries on through
a server restart in the middle of that lesson, and drops back to pairing when revoked.
The teacher opens each console from the day list (/teach).

Slots are one-off lessons today a few minutes apart; the server's time zone is chosen
so that local time is around noon (no slot crosses midnight)."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import ServerProcess, _backends
from tests.e2e.pages import missing_browser_reason, press, wait_until

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def noon_zone() -> str:
    """An Etc/GMT zone whose local time is about 12:00 now."""
    offset = 12 - dt.datetime.now(dt.UTC).hour
    return f"Etc/GMT-{offset}" if offset >= 0 else f"Etc/GMT+{-offset}"


@pytest.fixture(scope="module", params=_backends())
def room_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The embedded default (SQLite in the library), or Redis with
    CLASSROOM_E2E_BACKENDS=memory,redis (the school database and lessons there)."""
    extra = ["--timezone", noon_zone()]
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        redis_server.flush()
        extra += ["--redis-url", redis_server.url]
    srv = ServerProcess(extra, Path(tempfile.mkdtemp(prefix="classroom-room-")))
    srv.start()
    yield srv
    srv.stop()


def api(srv: ServerProcess, method: str, path: str, body: Any = None,
        token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(srv.base_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def hhmm(t: dt.datetime) -> str:
    return t.strftime("%H:%M")


def make_week(srv: ServerProcess, admin: str) -> tuple[str, str]:
    """Two one-off lessons of 王老师 today: A now (started a minute ago), B right after."""
    now = dt.datetime.now(ZoneInfo(noon_zone())).replace(second=0, microsecond=0)
    today = now.date()
    for path, body in (
        ("/api/schools", {"id": "city", "name": "城区小学"}),
        ("/api/schools", {"id": "rural", "name": "山村小学"}),
        ("/api/schools/city/classrooms", {"id": "cityA", "name": "城区一班"}),
        ("/api/schools/rural/classrooms", {"id": "ruralA", "name": "山村一班"}),
        ("/api/schools/city/teachers", {"id": "wang", "name": "王老师"}),
        ("/api/clusters", {"id": "c1", "name": "集群", "school_ids": ["city", "rural"]}),
        ("/api/terms", {"id": "t1", "name": "本学期",
                        "starts": (today - dt.timedelta(days=1)).isoformat(),
                        "ends": (today + dt.timedelta(days=30)).isoformat()}),
    ):
        status, reply = api(srv, "POST", path, body, admin)
        assert status == 201, (path, reply)
    lessons = []
    minute = dt.timedelta(minutes=1)
    for sid, start, end in (("mathA", now - minute, now + 3 * minute),
                            ("mathB", now + 3 * minute, now + 30 * minute)):
        status, reply = api(srv, "POST", "/api/timetable/slots", {
            "id": sid, "term_id": "t1", "subject": "数学", "grade": "三年级",
            "teacher_id": "wang", "main_classroom_id": "cityA", "cluster_id": "c1",
            "receiving_classroom_ids": ["ruralA"], "date": today.isoformat(),
            "starts": hhmm(start), "ends": hhmm(end)}, admin)
        assert status == 201, reply
        lessons.append(f"{sid}-{today.strftime('%Y%m%d')}")
    return lessons[0], lessons[1]


def room_state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.roomState()")


def frames(page: Any) -> int:
    frame = room_state(page).get("frame") or {}
    return int(frame.get("framesDecoded") or 0)


def open_console(srv: ServerProcess, open_page: Any, day_token: str, lesson: str) -> Any:
    today = open_page(f"{srv.base_url}/teach#token={day_token}")
    wait_until(lambda: today.evaluate("() => window.todayState().status") == "ready", 20,
               "the day list never loaded")
    link = today.locator(f'[data-lesson="{lesson}"] a.open')
    wait_until(lambda: link.count() == 1, 10, f"no console link for {lesson}")
    href = link.get_attribute("href")
    assert href.startswith(f"/teach/{lesson}#token=")
    path, _, fragment = href.partition("#")
    today.close()
    return open_page(f"{srv.base_url}{path}?res=360#{fragment}")


def test_room_joins_its_lessons_by_itself_and_drops_out_when_revoked(room_server, open_page):
    srv = room_server
    t0 = time.monotonic()
    admin = srv.token("admin", "*")
    lesson_a, lesson_b = make_week(srv, admin)

    room = open_page(f"{srv.base_url}/room")
    code = wait_until(lambda: room_state(room).get("code"), 20, "no pairing code shown")
    assert room.locator("#pair-code").inner_text().replace(" ", "") == code
    status, device = api(srv, "POST", "/api/devices",
                         {"code": code, "classroom_id": "ruralA", "name": "一班电视"}, admin)
    assert status == 201, device
    state = wait_until(lambda: (s := room_state(room))["lesson"] == lesson_a and s, 20,
                       "the room never went to its current lesson")
    assert state["paired"] and state["deviceId"] == device["id"]
    wait_until(lambda: room.locator("#join-code").inner_text().strip(), 10, "no join code")
    secret = room.evaluate("() => localStorage.getItem('classroom.device')")
    assert secret.startswith(device["id"] + ".")

    status, link = api(srv, "POST", "/api/teacher/links", {"teacher_id": "wang"}, admin)
    assert status == 201, link
    teacher = open_console(srv, open_page, link["token"], lesson_a)
    press(teacher, "start-lesson")
    before = frames(room)
    wait_until(lambda: frames(room) >= before + 15, 40, "the TV decoded no frames of lesson A")
    # the room reads its view's lesson state once a second (room.js): live within 2 s
    wait_until(lambda: room_state(room)["state"] == "live", 2, "the room never said live")
    print(f"lesson A live on the TV after {time.monotonic() - t0:.1f}s")

    press(teacher, "end-lesson")
    wait_until(lambda: room_state(room)["lesson"] == lesson_b, 20,
               "the room did not go on to the next lesson after the end")
    assert room.locator("#schedule").is_visible()  # the countdown / waiting card of B
    teacher.close()
    teacher = open_console(srv, open_page, link["token"], lesson_b)
    press(teacher, "start-lesson")
    wait_until(lambda: frames(room) >= 15 and room_state(room)["state"] == "live", 40,
               "the TV decoded no frames of lesson B")
    print(f"lesson B live on the TV after {time.monotonic() - t0:.1f}s")

    # the server dies mid-lesson and comes back: the TV carries on by itself
    srv.kill()
    before = frames(room)
    srv.start()
    wait_until(lambda: frames(room) >= before + 15, 60,
               "the TV did not resume lesson B after the server restart")
    state = room_state(room)
    assert (state["lesson"], state["state"], state["paired"]) == (lesson_b, "live", True)
    print(f"lesson B resumed after a restart at {time.monotonic() - t0:.1f}s")

    status, _ = api(srv, "DELETE", f"/api/devices/{device['id']}", token=admin)
    assert status == 200
    wait_until(lambda: (s := room_state(room))["phase"] == "pairing" and s["code"]
               and not s["paired"] and s["lesson"] is None, 20,
               "the revoked room did not drop out to pairing")
    # the credential never travelled in a URL
    assert not [u for u in room.requests if secret.split(".", 1)[1] in u]
    print(f"revoked after {time.monotonic() - t0:.1f}s")
