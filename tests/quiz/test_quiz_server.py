"""Practice and tests through the real server, on the memory and the Redis backend."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from classroom_client import ProtocolError
from tests.helpers import eventually
from tests.quiz.conftest import LESSON, SAMPLE_SET, aid, answer, http, put_set, report


async def push(teacher, **msg):
    return await teacher.request({"type": "push-question", **msg}, "quiz-question")


def tally_of(client):
    tallies = [m for m in client.messages if m["type"] == "quiz-tally"]
    return tallies[-1] if tallies else None


async def test_push_answer_live_tally_and_reveal(server, clients):
    await put_set(server)
    teacher = await clients.connect("teacher", name="王老师")
    room_a = await clients.connect("classroom", name="一班", school="山村小学", sub="room-a")
    room_b = await clients.connect("classroom", name="二班", school="河边小学", sub="room-b")
    student = await clients.connect("student", name="小明", school="山村小学", sub="stu-1")
    assert student.welcome["quiz"]["round"] is None
    assert all(p["role"] != "student" for p in teacher.roster), teacher.roster

    event = await push(teacher, question_id="q1")
    rnd = event["round"]
    assert rnd["mode"] == "practice" and rnd["state"] == "open" and event["at"] > 0
    q = rnd["questions"][0]
    assert q["options"] == ["1/6", "3/4", "2/6"] and "answer" not in q
    assert "explanation" not in q
    for c in (room_a, room_b, student):
        got = await c.next_message("quiz-question", since=0)
        assert got["round"]["round_id"] == rnd["round_id"]
        assert "answer" not in got["round"]["questions"][0]

    # before anyone answers, both online classrooms are "not answered"
    await eventually(lambda: tally_of(teacher) and {
        r["name"] for r in tally_of(teacher)["questions"]["q1"]["not_answered"]
    } == {"一班", "二班"})

    ack = await answer(room_a, rnd, "q1", value=1, classroom="room-a")
    assert ack["duplicate"] is False and ack["value"] == 1
    ack = await answer(room_b, rnd, "q1", tally={"0": 3, "1": 7})
    assert ack["tally"] == {"0": 3, "1": 7}
    await answer(student, rnd, "q1", value=0)

    def settled():
        t = tally_of(teacher)
        return t and t["answers"] == 3 and t
    await eventually(settled)
    t = tally_of(teacher)["questions"]["q1"]
    assert t["option_counts"] == [3 + 1, 7 + 1, 0]
    assert t["responses"] == 3 and t["students"] == 1 and t["classrooms"] == 2
    assert t["not_answered"] == []
    assert {(r["name"], r["correct"], r["judged"]) for r in t["by_classroom"]} == {
        ("一班", 1, 1), ("二班", 7, 10)}

    await teacher.request({"type": "reveal"}, "quiz-reveal")
    for c in (room_a, student):
        rev = await c.next_message("quiz-reveal", since=0)
        assert rev["questions"][0]["answer"] == 1
        assert rev["questions"][0]["explanation"].startswith("通分")
        assert rev["correct_options"] == {"q1": 1}
        await c.next_message("quiz-closed", since=0, where=lambda m: m["reason"] == "reveal")
    state = await student.request({"type": "quiz-state"}, "quiz-state")
    assert state["round"]["state"] == "closed" and state["round"]["revealed_at"]
    [own] = state["own_answers"]
    assert own["value"] == 0 and own["correct"] == 0 and own["score"] == 0
    state = await room_a.request({"type": "quiz-state"}, "quiz-state")
    assert state["own_answers"][0]["correct"] == 1 and state["own_answers"][0]["score"] == 2

    # answering a revealed (closed) question is refused and stores nothing
    with pytest.raises(ProtocolError) as err:
        await answer(student, rnd, "q1", value=1, answer_id=aid())
    assert err.value.code == "question_closed"
    rep = await report(server)
    assert rep["totals"]["answers"] == 3


async def test_inline_question_types_and_scoring(server, clients):
    teacher = await clients.connect("teacher")
    student = await clients.connect("student", sub="s1")
    cases = [
        ({"type": "fill", "text": "首都?", "answer": ["北京", "Beijing"]}, "  BEIJING。", 1),
        ({"type": "fill", "text": "x", "answer": "ｈｅｌｌｏ world"}, "Hello   World!", 1),
        ({"type": "numeric", "text": "π", "answer": 3.14, "tolerance": 0.01}, "3,145", 1),
        ({"type": "numeric", "text": "π", "answer": 3.14, "tolerance": 0.01}, 3.2, 0),
        ({"type": "multiple", "text": "m", "options": ["a", "b", "c"], "answer": [0, 2]},
         [2, 0], 1),
        ({"type": "multiple", "text": "m", "options": ["a", "b", "c"], "answer": [0, 2]},
         [0], 0),
        ({"type": "truefalse", "text": "t", "answer": False}, 1, 1),
    ]
    for question, value, correct in cases:
        rnd = (await push(teacher, question=question))["round"]
        await answer(student, rnd, rnd["questions"][0]["id"], value=value)
        await teacher.request({"type": "reveal"}, "quiz-reveal")
        state = await student.request({"type": "quiz-state"}, "quiz-state")
        mine = [a for a in state["own_answers"] if a["round_id"] == rnd["round_id"]]
        assert mine[0]["correct"] == correct, (question, value)
    status, exported = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/set",
                                  server.token("teacher", LESSON))
    assert status == 200 and len(exported["questions"]) == len(cases)


async def test_resend_is_acked_again_never_stored_twice(server, clients):
    await put_set(server)
    teacher = await clients.connect("teacher")
    student = await clients.connect("student", sub="stu-1")
    other = await clients.connect("student", sub="stu-2")
    rnd = (await push(teacher, question_id="q1"))["round"]
    answer_id = aid()
    first = await answer(student, rnd, "q1", value=1, answer_id=answer_id)
    again = await answer(student, rnd, "q1", value=1, answer_id=answer_id)
    assert again["duplicate"] is True
    assert {k: v for k, v in again.items() if k != "duplicate"} == {
        k: v for k, v in first.items() if k != "duplicate"}
    # a resend with a changed body is still the same answer (the stored one wins)
    changed = await answer(student, rnd, "q1", value=2, answer_id=answer_id)
    assert changed["duplicate"] is True and changed["value"] == 1
    # another answer_id for the same question: refused
    with pytest.raises(ProtocolError) as err:
        await answer(student, rnd, "q1", value=2)
    assert err.value.code == "already_answered"
    # someone else replaying this answer_id: refused, not credited to them
    with pytest.raises(ProtocolError) as err:
        await answer(other, rnd, "q1", value=1, answer_id=answer_id)
    assert err.value.code == "answer_id_conflict"
    # resend after the round closed: still acknowledged as the stored answer
    await teacher.request({"type": "close-round"}, "quiz-closed")
    late = await answer(student, rnd, "q1", value=1, answer_id=answer_id)
    assert late["duplicate"] is True
    rep = await report(server)
    assert rep["totals"]["answers"] == 1
    assert [a["answer_id"] for a in rep["answers"]] == [answer_id]


BAD_ANSWERS = [
    # (description, message overrides, role, expected code)
    ("unknown round", {"round_id": "r-nope"}, "student", "question_unknown"),
    ("unknown question", {"question_id": "q9"}, "student", "question_unknown"),
    ("option out of range", {"value": 3}, "student", "answer_invalid"),
    ("negative option", {"value": -1}, "student", "answer_invalid"),
    ("text for a choice", {"value": "B"}, "student", "answer_invalid"),
    ("float for a choice", {"value": 1.0}, "student", "answer_invalid"),
    ("no value nor tally", {"value": None}, "student", "answer_invalid"),
    ("value and tally", {"tally": {"0": 1}}, "classroom", "answer_invalid"),
    ("student tally", {"value": None, "tally": {"1": 5}}, "student", "answer_invalid"),
    ("tally out of range", {"value": None, "tally": {"5": 5}}, "classroom", "answer_invalid"),
    ("tally negative", {"value": None, "tally": {"1": -2}}, "classroom", "answer_invalid"),
    ("tally of nobody", {"value": None, "tally": {"1": 0}}, "classroom", "answer_invalid"),
    ("short answer_id", {"answer_id": "x"}, "student", "answer_invalid"),
    ("odd answer_id", {"answer_id": "../../etc/passwd"}, "student", "answer_invalid"),
    ("another classroom", {"classroom": "room-b"}, "classroom", "not_your_classroom"),
    ("student for a room", {"classroom": "room-a"}, "student", "not_your_classroom"),
    ("teacher answering", {}, "teacher", "forbidden"),
    ("bool value", {"value": True}, "student", "bad_message"),
    ("object value", {"value": {"a": 1}}, "student", "bad_message"),
    ("huge round id", {"round_id": "r" * 65}, "student", "bad_message"),
]


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=[c[0] for c in BAD_ANSWERS])
async def test_bad_answers_are_refused_with_a_code(server, clients, case):
    _, overrides, role, code = case
    await put_set(server)
    teacher = await clients.connect("teacher")
    who = await clients.connect(role, sub="room-a" if role == "classroom" else "s-1")
    rnd = (await push(teacher, question_id="q1"))["round"]
    msg = {"type": "quiz-answer", "answer_id": aid(), "round_id": rnd["round_id"],
           "question_id": "q1", "value": 1, **overrides}
    msg = {k: v for k, v in msg.items() if v is not None}
    mark = len(who.messages)
    await who.send(msg)  # schema errors come before the type is known: no "ref"
    reply = await who.next_message(("quiz-ack", "error"), since=mark)
    assert reply["type"] == "error" and reply["code"] == code
    # the socket stays usable and nothing was stored
    assert (await who.request({"type": "ping"}, "pong"))["type"] == "pong"
    assert (await report(server))["totals"]["answers"] == 0


async def test_oversize_text_and_fill_and_numeric_inputs(server, clients):
    teacher = await clients.connect("teacher")
    student = await clients.connect("student")
    rnd = (await push(teacher, question={"id": "f", "type": "fill", "text": "?",
                                         "answer": "x"}))["round"]
    for value, code in [("y" * 201, "answer_too_long"), ("   ", "answer_invalid"),
                        (5, "answer_invalid"), ([1], "answer_invalid")]:
        with pytest.raises(ProtocolError) as err:
            await answer(student, rnd, "f", value=value)
        assert err.value.code == code, value
    assert (await answer(student, rnd, "f", value="y" * 200))["duplicate"] is False
    rnd = (await push(teacher, question={"id": "n", "type": "numeric", "text": "?",
                                         "answer": 2}))["round"]
    for value, code in [("two", "answer_invalid"), ("1e999", "answer_invalid"),
                        ("9" * 65, "answer_too_long")]:
        with pytest.raises(ProtocolError) as err:
            await answer(student, rnd, "n", value=value)
        assert err.value.code == code, value
    assert (await report(server))["totals"]["answers"] == 1


async def test_teacher_commands_checked(server, clients):
    teacher = await clients.connect("teacher")
    room = await clients.connect("classroom")
    student = await clients.connect("student")
    for c in (room, student):
        with pytest.raises(ProtocolError) as err:
            await c.request({"type": "push-question", "question_id": "q1"}, "quiz-question")
        assert err.value.code == "forbidden"
    with pytest.raises(ProtocolError) as err:
        await push(teacher, question_id="q1")  # no set yet
    assert err.value.code == "question_unknown"
    for bad in [{"type": "single", "text": "x", "options": ["a"], "answer": 0},
                {"type": "single", "text": "x", "options": ["a", "b"], "answer": 2},
                {"type": "essay", "text": "x"},
                {"type": "fill", "text": "x", "answer": []},
                {"type": "numeric", "text": "x", "answer": 1, "tolerance": -1},
                {"type": "truefalse", "text": "x", "answer": "yes"},
                {"type": "truefalse", "text": "x", "answer": True, "colour": "red"}]:
        with pytest.raises(ProtocolError) as err:
            await push(teacher, question=bad)
        assert err.value.code == "question_invalid", bad
    with pytest.raises(ProtocolError) as err:
        await push(teacher)
    assert err.value.code == "bad_message"
    with pytest.raises(ProtocolError) as err:
        await teacher.request({"type": "open-test", "duration": 60}, "quiz-test")
    assert err.value.code == "question_unknown"
    await put_set(server)
    with pytest.raises(ProtocolError) as err:
        await teacher.request({"type": "open-test", "duration": 0.5}, "quiz-test")
    assert err.value.code == "bad_message"
    with pytest.raises(ProtocolError) as err:
        await teacher.request({"type": "open-test", "duration": 60,
                               "question_ids": ["q1", "zz"]}, "quiz-test")
    assert err.value.code == "question_unknown"
    with pytest.raises(ProtocolError) as err:
        await teacher.request({"type": "reveal", "round_id": "r-none"}, "quiz-reveal")
    assert err.value.code == "question_unknown"
    with pytest.raises(ProtocolError) as err:
        await teacher.request({"type": "close-round"}, "quiz-closed")
    assert err.value.code == "question_unknown"


@pytest.mark.parametrize("body,where", [
    ("not json", "not JSON"),
    ('["a list"]', "JSON object"),
    ('{"questions": "q1"}', "questions"),
    ('{"format": "other", "questions": []}', "format"),
    ('{"questions": [{"type": "single", "text": "x", "options": ["a", "b"]}]}',
     "questions[0].answer"),
    ('{"questions": [{"id": "a", "type": "truefalse", "text": "x", "answer": true},'
     ' {"id": "a", "type": "truefalse", "text": "y", "answer": false}]}', "duplicate"),
    ('{"questions": [{"id": "a b", "type": "truefalse", "text": "x", "answer": true}]}',
     "questions[0].id"),
    ('{"questions": [{"type": "single", "text": "x", "options": ["a", ""], "answer": 0}]}',
     "questions[0].options[1]"),
    ('{"questions": [{"type": "fill", "text": "x", "answer": "a", "image": '
     '"https://cdn.example/x.png"}]}', "questions[0].image"),
    ('{"questions": [{"type": "single", "text": "x", "options": ["a", "b"], "answer": 0,'
     ' "points": 0}]}', "points"),
])
async def test_malformed_question_set_import(server, body, where):
    token = server.token("teacher", LESSON)
    status, reply = await http(server, "PUT", f"/api/lessons/{LESSON}/quiz/set", token,
                               data=body)
    assert status == 400 and reply["error"]["code"] == "quiz_set_invalid"
    assert where in reply["error"]["message"]
    status, exported = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/set", token)
    assert status == 200 and exported["questions"] == []


async def test_set_roles_and_round_trip(server):
    stored = await put_set(server)
    status, exported = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/set",
                                  server.token("teacher", LESSON))
    assert exported == stored and exported["questions"][1]["answer"] is True
    for role, method, code in [("classroom", "PUT", "forbidden"),
                               ("student", "GET", "forbidden")]:
        status, reply = await http(server, method, f"/api/lessons/{LESSON}/quiz/set",
                                   server.token(role, LESSON), json=SAMPLE_SET)
        assert status == 403 and reply["error"]["code"] == code
    status, reply = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/set",
                               server.token("teacher", "other-lesson"))
    assert status == 403 and reply["error"]["code"] == "wrong_lesson"


async def _wait_server_time(client, target: float) -> None:
    """Sleep until the server's clock reads ``target`` (offset from welcome)."""
    offset = client.welcome["server_time"] - time.time()
    delay = target - (time.time() + offset)
    if delay > 0:
        await asyncio.sleep(delay)


async def test_timed_test_refuses_late_answers(server, clients):
    await put_set(server)
    teacher = await clients.connect("teacher")
    student = await clients.connect("student", sub="s1")
    room = await clients.connect("classroom", sub="room-a")
    ev = await teacher.request({"type": "open-test", "duration": 2.0, "title": "小测",
                                "question_ids": ["q1", "q2", "q4"]}, "quiz-test")
    rnd = ev["round"]
    assert rnd["mode"] == "test" and [q["id"] for q in rnd["questions"]] == ["q1", "q2", "q4"]
    assert rnd["closes_at"] == pytest.approx(rnd["opened_at"] + 2.0)
    assert abs(ev["server_time"] - rnd["opened_at"]) < 0.5
    got = await student.next_message("quiz-test", since=0)
    assert got["round"]["closes_at"] == rnd["closes_at"]
    await answer(room, rnd, "q2", value=0)
    await _wait_server_time(student, rnd["closes_at"] - 0.35)
    ack = await answer(student, rnd, "q1", value=1)  # just before the deadline
    assert ack["received_at"] <= rnd["closes_at"]
    await _wait_server_time(student, rnd["closes_at"] + 0.15)
    with pytest.raises(ProtocolError) as err:  # just after
        await answer(student, rnd, "q2", value=0)
    assert err.value.code == "answer_too_late"
    closed = await student.next_message("quiz-closed", since=0, timeout=5)
    assert closed["reason"] == "time" and closed["closed_at"] == pytest.approx(rnd["closes_at"])
    with pytest.raises(ProtocolError) as err:
        await answer(room, rnd, "q4", value="1/2")
    assert err.value.code == "answer_too_late"
    rep = await report(server)
    assert rep["totals"]["answers"] == 2
    assert {(a["id"], a["question_id"]) for a in rep["answers"]} == {("s1", "q1"),
                                                                     ("room-a", "q2")}
    assert rep["rounds"][0]["closed_at"] == pytest.approx(rnd["closes_at"])


async def test_reconnect_mid_test_gets_question_own_answers_and_time_left(server, clients):
    await put_set(server)
    teacher = await clients.connect("teacher")
    token = server.token("student", LESSON, sub="stu-9", name="小红")
    student = await clients.connect("student", token=token)
    rnd = (await teacher.request({"type": "open-test", "duration": 30}, "quiz-test"))["round"]
    first_id = aid()
    await answer(student, rnd, "q1", value=1, answer_id=first_id)
    await answer(student, rnd, "q4", value="二分之一")
    await student.close()
    again = await clients.connect("student", token=token)
    quiz = again.welcome["quiz"]
    assert quiz["round"]["round_id"] == rnd["round_id"] and quiz["round"]["state"] == "open"
    assert "answer" not in quiz["round"]["questions"][0]
    assert 0 < quiz["time_left"] <= 30
    assert quiz["time_left"] == pytest.approx(rnd["closes_at"] - quiz["server_time"], abs=0.01)
    assert {(a["question_id"], a["answer_id"] == first_id) for a in quiz["own_answers"]} == {
        ("q1", True), ("q4", False)}
    assert all("correct" not in a for a in quiz["own_answers"])  # not before the reveal
    ack = await answer(again, rnd, "q1", value=1, answer_id=first_id)  # resent after reconnect
    assert ack["duplicate"] is True
    await answer(again, rnd, "q2", value=0)
    teacher_again = await clients.connect("teacher")
    tally = teacher_again.welcome["quiz"]["tally"]
    assert tally["answers"] == 3 and tally["questions"]["q1"]["option_counts"] == [0, 1, 0]


async def test_two_nodes_share_a_test_and_survive_a_restart(redis_url):
    from tests.helpers import start_server
    from tests.quiz.conftest import Clients

    a = await start_server(redis_url=redis_url, presence_ttl=2.0, roster_poll=0.3)
    b = await start_server(redis_url=redis_url, presence_ttl=2.0, roster_poll=0.3)
    ca, cb = Clients(a), Clients(b)
    try:
        await put_set(a)
        teacher = await ca.connect("teacher")
        on_b = await cb.connect("student", sub="stu-b")
        token = a.token("student", LESSON, sub="stu-a")
        on_a = await ca.connect("student", token=token)
        rnd = (await teacher.request({"type": "open-test", "duration": 20},
                                     "quiz-test"))["round"]
        got = await on_b.next_message("quiz-test", since=0)  # heard across nodes
        assert got["round"]["round_id"] == rnd["round_id"]
        kept = aid()
        await answer(on_a, rnd, "q1", value=1, answer_id=kept)
        await answer(on_b, rnd, "q1", value=0)
        # the answer stored through node A is recognised on node B
        room_b = await cb.connect("student", token=token)
        ack = await answer(room_b, rnd, "q1", value=1, answer_id=kept)
        assert ack["duplicate"] is True
        await eventually(lambda: (t := tally_of(teacher)) and t["answers"] == 2)

        # node A dies mid-test and comes back on the same Redis
        await ca.close()
        await a.close()
        a2 = await start_server(redis_url=redis_url, presence_ttl=2.0, roster_poll=0.3)
        ca = Clients(a2)
        back = await ca.connect("student", token=token)
        quiz = back.welcome["quiz"]
        assert quiz["round"]["round_id"] == rnd["round_id"]
        assert [x["answer_id"] for x in quiz["own_answers"]] == [kept]
        assert 0 < quiz["time_left"] < 20
        await answer(back, rnd, "q2", value=0)
        teacher2 = await ca.connect("teacher")
        await teacher2.request({"type": "close-round"}, "quiz-closed")
        await on_b.next_message("quiz-closed", since=0)
        for srv in (a2, b):
            rep = await report(srv)
            assert rep["totals"]["answers"] == 3
            assert {(x["id"], x["question_id"]) for x in rep["answers"]} == {
                ("stu-a", "q1"), ("stu-b", "q1"), ("stu-a", "q2")}
        await a2.close()
    finally:
        await ca.close()
        await cb.close()
        await b.close()
        with contextlib.suppress(Exception):
            await a.close()


async def test_report_contents_roles_and_csv(server, clients):
    await put_set(server)
    teacher = await clients.connect("teacher")
    rooms = [await clients.connect("classroom", name=n, school=s, sub=sub)
             for n, s, sub in [("一班", "山村小学", "room-a"), ("二班", "河边小学", "room-b")]]
    studs = [await clients.connect("student", name=n, school=s, sub=sub)
             for n, s, sub in [("小明", "山村小学", "s1"), ("小红", "河边小学", "s2")]]
    rnd = (await teacher.request({"type": "open-test", "duration": 60,
                                  "question_ids": ["q1", "q2", "q4"]}, "quiz-test"))["round"]
    await answer(rooms[0], rnd, "q1", tally={"1": 8, "0": 2})
    await answer(rooms[1], rnd, "q1", value=0)
    await answer(rooms[0], rnd, "q2", value=0)
    await answer(studs[0], rnd, "q1", value=1)
    await answer(studs[0], rnd, "q4", value="1/2")
    await answer(studs[1], rnd, "q4", value="三分之一")
    await answer(studs[1], rnd, "q2", value=1)
    await teacher.request({"type": "close-round"}, "quiz-closed")

    rep = await report(server)
    assert rep["totals"]["answers"] == 7 and rep["totals"]["classrooms"] == 2
    qs = {q["question_id"]: q for q in rep["questions"]}
    assert qs["q1"]["option_counts"] == [2 + 1, 8 + 1, 0]
    assert (qs["q1"]["judged"], qs["q1"]["correct"]) == (12, 9)
    assert qs["q1"]["accuracy"] == pytest.approx(0.75)
    assert (qs["q2"]["correct"], qs["q4"]["correct"]) == (1, 1)
    rooms_rep = {c["id"]: c for c in rep["classrooms"]}
    assert rooms_rep["room-a"]["accuracy"] == pytest.approx(9 / 11, abs=1e-4)
    assert rooms_rep["room-a"]["score"] == pytest.approx(2 * 0.8 + 1)
    assert rooms_rep["room-b"]["accuracy"] == 0
    schools = {s["school"]: s for s in rep["schools"]}
    assert schools["山村小学"]["judged"] == 10 + 1 + 1 + 1
    students = {s["id"]: s for s in rep["students"]}
    assert students["s1"]["correct"] == 2 and students["s2"]["correct"] == 0
    assert rep["most_missed"][0]["question_id"] in ("q2", "q4")
    assert sum(b["count"] for b in rep["answer_times"]["buckets"]) == 7

    # a classroom's or student's report judges revealed rounds only (the key stays hidden)
    await teacher.request({"type": "reveal"}, "quiz-reveal")
    own = await report(server, "classroom", sub="room-b")
    assert own["scope"] == "classroom" and own["totals"]["answers"] == 1
    assert [c["id"] for c in own["classrooms"]] == ["room-b"] and own["students"] == []
    mine = await report(server, "student", sub="s2")
    assert {a["question_id"] for a in mine["answers"]} == {"q2", "q4"}
    status, body = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/report",
                              server.token("ops", "*"))
    assert status == 200 and body["totals"]["answers"] == 7
    status, body = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/report",
                              server.token("student", "other-lesson"))
    assert status == 403 and body["error"]["code"] == "wrong_lesson"
    status, text = await http(server, "GET", f"/api/lessons/{LESSON}/quiz/report.csv",
                              server.token("teacher", LESSON))
    assert status == 200 and text.startswith("\ufeffround_id,mode,question_id")
    assert len(text.strip().splitlines()) == 1 + 7 and "三分之一" in text


async def test_student_token_for_another_lesson(server):
    from classroom_client import ClassroomClient

    client = ClassroomClient(server.base_url, server.token("student", "other-lesson"),
                             lesson=LESSON)
    with pytest.raises(ProtocolError) as err:
        await client.connect()
    assert err.value.code == "wrong_lesson"
    await client.close()


async def test_metrics_and_lesson_events(server, clients):
    await put_set(server)
    teacher = await clients.connect("teacher")
    student = await clients.connect("student")
    rnd = (await push(teacher, question_id="q2"))["round"]
    await answer(student, rnd, "q2", value=0)
    with pytest.raises(ProtocolError):
        await answer(student, rnd, "q2", value=5)
    await teacher.request({"type": "reveal"}, "quiz-reveal")
    kinds = [m["type"] for m in student.messages if m["type"].startswith("quiz-")
             and m["type"] not in ("quiz-ack",)]
    assert kinds == ["quiz-question", "quiz-closed", "quiz-reveal"]
    assert all(m["at"] > 0 for m in student.messages if m["type"] in kinds)
    async with aiohttp.ClientSession() as s, s.get(server.base_url + "/metrics") as r:
        text = await r.text()
    assert 'classroom_quiz_answers_total{mode="practice",result="stored"}' in text
    assert 'classroom_quiz_answers_total{mode="practice",result="answer_invalid"}' in text
    assert "classroom_quiz_ack_latency_seconds_bucket" in text
