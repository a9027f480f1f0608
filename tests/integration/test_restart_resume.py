"""A lesson survives a restart of `classroom serve` on the embedded default (SQLite in the
library folder): real server processes, killed with SIGKILL mid-lesson, started again on
the same library. And a database locked by another process: a clear 503, nothing lost."""

from __future__ import annotations

import sqlite3
import time
import uuid

import aiohttp
import pytest

from classroom_client import ClassroomClient, ProtocolError
from tests.e2e.conftest import ServerProcess
from tests.quiz.conftest import SAMPLE_SET

LESSON = "restart-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(["--no-recording"], tmp_path_factory.mktemp("restart"))
    srv.start()
    yield srv
    srv.kill()  # a graceful stop waits out aiohttp's shutdown; nothing to flush here


async def api(srv: ServerProcess, method: str, path: str, token: str, body=None):
    async with aiohttp.ClientSession() as s, s.request(
            method, srv.base_url + path, json=body,
            headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def connect(srv: ServerProcess, role: str, **claims) -> ClassroomClient:
    client = ClassroomClient(srv.base_url, srv.token(role, LESSON, **claims))
    await client.connect()
    return client


def answer_msg(rnd: dict, value: int, answer_id: str | None = None) -> dict:
    return {"type": "quiz-answer", "answer_id": answer_id or uuid.uuid4().hex,
            "round_id": rnd["round_id"], "question_id": "q1", "value": value}


async def test_live_lesson_question_and_answers_survive_kill_9(server):
    t0 = time.monotonic()
    teacher = await connect(server, "teacher", name="王老师", school="城区小学")
    await teacher.start_lesson()
    status, _ = await api(server, "PUT", f"/api/lessons/{LESSON}/quiz/set",
                          server.token("teacher", LESSON), SAMPLE_SET)
    assert status == 200
    rnd = (await teacher.request({"type": "push-question", "question_id": "q1"},
                                 "quiz-question"))["round"]
    room_a = await connect(server, "classroom", name="一班", school="山村小学", sub="room-a")
    room_b = await connect(server, "classroom", name="二班", school="河边小学", sub="room-b")
    first_a = answer_msg(rnd, 1)
    ack_a = await room_a.request(first_a, "quiz-ack")
    ack_b = await room_b.request(answer_msg(rnd, 0), "quiz-ack")
    assert not ack_a["duplicate"] and not ack_b["duplicate"]
    _, before = await api(server, "GET", f"/api/lessons/{LESSON}",
                          server.token("teacher", LESSON))
    assert before["state"] == "live"

    server.kill()  # SIGKILL: nothing flushed on the way out
    for c in (teacher, room_a, room_b):
        await c.close()
    server.start()
    restarted = time.monotonic()

    status, lesson = await api(server, "GET", f"/api/lessons/{LESSON}",
                               server.token("teacher", LESSON))
    assert status == 200 and lesson["state"] == "live"
    assert lesson["started_at"] == before["started_at"]
    assert (lesson["title"], lesson["teacher"]) == (before["title"], before["teacher"])
    # a classroom reconnecting sees the lesson live and the question current, with its answer
    room_a = await connect(server, "classroom", name="一班", school="山村小学", sub="room-a")
    assert room_a.lesson_state == "live"
    quiz = room_a.welcome["quiz"]
    assert quiz["round"]["round_id"] == rnd["round_id"] and quiz["round"]["state"] == "open"
    assert [a["answer_id"] for a in quiz["own_answers"]] == [first_a["answer_id"]]
    # its resend is the stored answer; another answer to the same question is refused
    again = await room_a.request(first_a, "quiz-ack")
    assert again["duplicate"] is True and again["value"] == 1
    with pytest.raises(ProtocolError) as err:
        await room_a.request(answer_msg(rnd, 2), "quiz-ack")
    assert err.value.code == "already_answered"
    # the teacher's console gets the tally of both answers back; a third classroom answers
    teacher = await connect(server, "teacher", name="王老师", school="城区小学")
    assert teacher.welcome["quiz"]["tally"]["questions"]["q1"]["responses"] == 2
    room_c = await connect(server, "classroom", name="三班", school="河边小学", sub="room-c")
    assert room_c.welcome["quiz"]["round"]["round_id"] == rnd["round_id"]
    await room_c.request(answer_msg(rnd, 1), "quiz-ack")
    status, rep = await api(server, "GET", f"/api/lessons/{LESSON}/quiz/report",
                            server.token("teacher", LESSON))
    assert status == 200 and rep["totals"]["answers"] == 3
    for c in (teacher, room_a, room_c):
        await c.close()
    print(f"restart test: {time.monotonic() - t0:.1f}s "
          f"(restart to asserted: {time.monotonic() - restarted:.1f}s)")


async def test_locked_database_is_a_clear_503_and_nothing_is_lost(server):
    admin = server.token("admin", "*")
    status, _ = await api(server, "POST", "/api/schools", admin, {"id": "s1", "name": "一"})
    assert status == 201
    status, _ = await api(server, "PUT", f"/api/lessons/{LESSON}/quiz/set",
                          server.token("teacher", LESSON), SAMPLE_SET)
    assert status == 200
    teacher = await connect(server, "teacher")
    rnd = (await teacher.request({"type": "push-question", "question_id": "q2"},
                                 "quiz-question"))["round"]
    room = await connect(server, "classroom", name="四班", sub="room-d")
    other = sqlite3.connect(server.library / "classroom.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        status, body = await api(server, "POST", "/api/schools", admin,
                                 {"id": "s2", "name": "二"})
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        assert "locked" in body["error"]["message"]
        msg = {**answer_msg(rnd, 1), "question_id": "q2"}
        with pytest.raises(ProtocolError) as err:
            await room.request(msg, "quiz-ack")
        assert err.value.code == "store_unavailable"
        status, body = await api(server, "GET", "/api/schools", admin)  # reads go on
        assert status == 200 and [s["id"] for s in body["schools"]] == ["s1"]
    finally:
        other.execute("ROLLBACK")
        other.close()
    ack = await room.request(msg, "quiz-ack")  # the page's resend, once free
    assert ack["duplicate"] is False
    status, _ = await api(server, "POST", "/api/schools", admin, {"id": "s2", "name": "二"})
    assert status == 201
    for c in (teacher, room):
        await c.close()
