"""The typed protocol (signaling/messages): errors carry ``ref``, every request is answered,
nested bodies have limits, what the server sends matches its declared types, and the
generated docs/schema are the code's."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import msgspec
import pytest

from classroom_client import ClassroomClient
from signaling import authz, protocol_docs
from signaling.auth import Role
from signaling.errors import ClassroomError, ErrorCode
from signaling.messages import core
from signaling.messages.base import ClientMessage, Registry, WelcomeFields
from signaling.messages.stage import MESSAGES as STAGE
from signaling.protocol import parse_frame
from signaling.quiz.messages import MESSAGES as QUIZ
from tests.helpers import start_server
from tests.signaling.test_authz_table import sample_message

LESSON = "typed-1"
REGISTRY = Registry(core.MESSAGES + STAGE + QUIZ)


def error_of(raw: str) -> ClassroomError:
    with pytest.raises(ClassroomError) as err:
        parse_frame(raw, REGISTRY)
    return err.value


# --- parse errors carry ref --------------------------------------------------------------------
@pytest.mark.parametrize("raw,code,ref", [
    ('{"type":"ping","ts":[1]}', "bad_message", "ping"),
    ('{"type":"ping","ts":1e400}', "bad_json", "ping"),
    ('{"type":"ping","ts":' + "9" * 400 + "}", "bad_json", "ping"),
    ('{"type":"offer","purpose":"publish"}', "bad_message", "offer"),
    ('{"type":"quiz-answer","answer_id":"abcdefgh","round_id":"r","question_id":"q",'
     '"tally":{"x":1}}', "answer_invalid", "quiz-answer"),
    ('{"type":"teleport"}', "unknown_type", "teleport"),
    ('{"type":"ping","ts":' + "[" * 40 + "]" * 40 + "}", "bad_json", "ping"),
    ('{"ts":1}', "bad_message", None),
    ('{"type":5}', "bad_message", None),
    ("[1]", "bad_json", None),
    ("{not json", "bad_json", None),
])
def test_parse_errors_carry_ref_when_the_type_is_readable(raw, code, ref):
    err = error_of(raw)
    assert err.code.value == code, err
    assert getattr(err, "ref", None) == ref


async def test_errors_over_the_socket_carry_ref_and_forbidden_comes_first():
    server = await start_server(messages_per_second=5, message_burst=5)
    student = ClassroomClient(server.base_url, server.token("student", LESSON))
    try:
        await student.connect()
        mark = len(student.messages)
        await student.send_raw('{"type":"ping","ts":{"a":1}}')  # bad body, readable type
        await student.send_raw('{"type":"open-test","duration":"soon"}')  # not a student's
        await student.send_raw('{"type":"quiz-answer","answer_id":"x"}')  # a student's: body
        for _ in range(8):  # over the burst: rate_limited, still with its ref
            await student.send({"type": "ping", "ts": "flood"})
        await student.wait_for(lambda: sum(m["type"] == "error"
                                           for m in student.messages[mark:]) >= 4)
        errors = [(m["code"], m.get("ref")) for m in student.messages[mark:]
                  if m["type"] == "error"]
        assert errors[:3] == [("bad_message", "ping"), ("forbidden", "open-test"),
                              ("bad_message", "quiz-answer")]
        assert ("rate_limited", "ping") in errors[3:]
    finally:
        await student.close()
        await server.close()


# --- nested body limits ----------------------------------------------------------------------
def _push(question: dict) -> str:
    return json.dumps({"type": "push-question", "question": question})


def _answer(**fields) -> str:
    return json.dumps({"type": "quiz-answer", "answer_id": "abcdefgh1", "round_id": "r",
                       "question_id": "q", **fields})


SINGLE = {"type": "single", "text": "?", "options": ["a", "b"], "answer": 0}


@pytest.mark.parametrize("raw,code", [
    (_push({**SINGLE, "options": ["o"] * 11}), "question_invalid"),  # 2..10 options
    (_push({**SINGLE, "options": ["a", "x" * 501]}), "question_invalid"),  # option <= 500
    (_push({**SINGLE, "text": "x" * 2001}), "question_invalid"),
    (_push({**SINGLE, "points": 101}), "question_invalid"),
    (_push({**SINGLE, "answer": 10}), "question_invalid"),  # an index is 0..9
    (_push({"type": "fill", "text": "?", "answer": ["a"] * 21}), "question_invalid"),
    (_push({"type": "numeric", "text": "?", "answer": 1, "unit": "u" * 33}),
     "question_invalid"),
    (_answer(tally={str(i): 1 for i in range(11)}), "answer_invalid"),  # <= 10 options
    (_answer(tally={"0": 1001}), "answer_invalid"),  # <= 1000 per option
    (_answer(tally={"0": 1.5}), "answer_invalid"),
    (_answer(value=[0] * 11), "bad_message"),
    (_answer(value="x" * 1001), "bad_message"),
    (_answer(value={"a": 1}), "bad_message"),
    (json.dumps({"type": "grid-view", "peers": ["p"] * 257}), "bad_message"),
    (json.dumps({"type": "grid-view", "peers": [""]}), "bad_message"),
    (json.dumps({"type": "open-test", "duration": 60, "question_ids": ["q"] * 201}),
     "bad_message"),
    (json.dumps({"type": "open-test", "duration": 14401}), "bad_message"),
    (json.dumps({"type": "ice", "purpose": "publish", "candidate": "c",
                 "sdpMLineIndex": 2**40}), "bad_message"),
])
def test_nested_bodies_have_limits(raw, code):
    assert error_of(raw).code.value == code


def test_limits_leave_what_is_within_them():
    msg = parse_frame(_push({**SINGLE, "options": ["o" * 500] * 10, "answer": 9,
                             "points": 100}), REGISTRY)
    assert msg.question.answer == 9 and len(msg.question.options) == 10
    msg = parse_frame(_answer(tally={str(i): 1000 for i in range(10)}), REGISTRY)
    assert msg.tally == {str(i): 1000 for i in range(10)}
    assert parse_frame(_answer(value=[0, 1]), REGISTRY).value == [0, 1]


# --- every request is answered; everything sent matches its type ------------------------------
NOTIFICATIONS = {"ice", "quality", "glass"}
"""Notifications: no reply unless they fail (docs/protocol.md)."""


async def test_every_request_is_answered_and_every_reply_matches_its_type():
    server = await start_server(messages_per_second=1000, message_burst=1000)
    node = server.node
    clients: list[ClassroomClient] = []
    try:
        async def connect(role: str, **claims) -> ClassroomClient:
            c = ClassroomClient(server.base_url, server.token(role, LESSON, **claims))
            await c.connect()
            clients.append(c)
            return c

        invalid_before = _invalid_count()
        teacher = await connect("teacher", sub="t-1", school="s1")
        room = await connect("classroom", sub="room-1", school="s1")
        other = await connect("classroom", sub="room-2", school="s1")
        student = await connect("student", sub="pupil-1")
        assert (await teacher.start_lesson())["lesson_state"] == "live"
        question = {"id": "q1", "type": "single", "text": "1+1?", "options": ["1", "2"],
                    "answer": 1}
        rnd = (await teacher.request({"type": "push-question", "question": question},
                                     "quiz-question"))["round"]
        await student.request({"type": "quiz-answer", "answer_id": "pupil-answer-1",
                               "round_id": rnd["round_id"], "question_id": "q1",
                               "value": 1}, "quiz-ack")
        await room.request({"type": "raise-hand"}, "hand")
        unanswered = []
        n = 0
        for msg_type, cls in node.protocol.client.items():
            replies = reply_types(cls.reply)
            if msg_type in NOTIFICATIONS or msg_type in ("hello", "remove-classroom"):
                continue
            for who in (teacher, room, student):
                role = Role(who.welcome["role"])
                action = authz.message_action(msg_type, "subscribe" if msg_type == "offer"
                                              else None)
                if action not in authz.TABLE or role not in authz.TABLE[action].roles:
                    continue
                n += 1
                msg = sample_message(action, who.welcome.get("session_token", ""),
                                     node.schemas)
                if msg_type in ("mute-classroom", "call-on-stage"):
                    msg["peer_id"] = other.peer_id
                if msg_type == "refresh":
                    msg["token"] = server.token(role.value, LESSON, sub=SUBS[role.value],
                                                school=who.welcome["school"])
                mark = len(who.messages)
                await who.send(msg)
                await who.send({"type": "ping", "ts": f"barrier-{n}"})
                await who.next_message("pong", since=mark, timeout=10,
                                       where=lambda m, n=n: m.get("ts") == f"barrier-{n}")
                if not await _answered(who, mark, f"barrier-{n}", msg_type, replies):
                    unanswered.append(f"{msg_type} by {role.value}")
        assert n >= 25, n
        assert not unanswered, unanswered
        # remove-classroom last: it closes the classroom's socket
        done = await teacher.request({"type": "remove-classroom", "peer_id": other.peer_id},
                                     "done")
        assert done == {"type": "done", "ref": "remove-classroom", "peer_id": other.peer_id}
        await other.wait_for(lambda: other.closed)
        # what every client received is what the server declares it sends
        problems = []
        for c in clients:
            for m in c.messages:
                problem = node.protocol.check_outgoing(m)
                if problem is not None:
                    problems.append(f"{m['type']}: {problem}")
            assert {m["type"] for m in c.messages} <= set(node.protocol.server)
        assert not problems, problems[:10]
        assert _invalid_count() == invalid_before  # the server's own check agrees
    finally:
        for c in clients:
            await c.close()
        await server.close()


SUBS = {"teacher": "t-1", "classroom": "room-1", "student": "pupil-1"}


def reply_types(reply: str) -> set[str]:
    """The message types a request's documented ``reply`` names (`` `quiz-ack` ``,
    `` `error question_closed` ``, ...)."""
    return set(re.findall(r"`([a-z][a-z-]*)(?:`| [a-z_]+`)", reply))


async def _answered(client: ClassroomClient, mark: int, barrier: str, msg_type: str,
                    replies: set[str]) -> bool:
    """A reply the request documents (or an error about it) since ``mark``; one from a
    lane may follow the barrier's pong by a moment, so wait up to 2 s for it."""
    deadline = time.monotonic() + 2.0
    while True:
        for m in client.messages[mark:]:
            if m["type"] == "error" and m.get("ref") == msg_type:
                return True
            if m["type"] in replies - {"error"} and not (
                    m["type"] == "pong" and m.get("ts") == barrier):
                return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


def _invalid_count() -> float:
    from signaling.protocol import OUTGOING_INVALID

    return sum(s.value for metric in OUTGOING_INVALID.collect() for s in metric.samples
               if s.name.endswith("_total"))


async def test_start_lesson_is_idempotent_and_answers_the_lesson():
    server = await start_server()
    teacher = ClassroomClient(server.base_url, server.token("teacher", LESSON))
    room = ClassroomClient(server.base_url, server.token("classroom", LESSON))
    try:
        await teacher.connect()
        await room.connect()
        first = await teacher.start_lesson()
        started_at = first["lesson_info"]["started_at"]
        await room.next_message("lesson", since=0)
        room_mark = len(room.messages)
        again = await teacher.start_lesson()  # answered, nothing changed
        assert again["lesson_state"] == "live"
        assert again["lesson_info"]["started_at"] == started_at
        ended = await teacher.end_lesson()
        assert ended["lesson_state"] == "ended"
        assert (await teacher.end_lesson())["lesson_state"] == "ended"
        # the classroom heard the two changes, not the two repeats
        await room.next_message("lesson", since=room_mark,
                                where=lambda m: m["lesson_state"] == "ended")
        await room.request({"type": "ping"}, "pong")
        assert [m["lesson_state"] for m in room.messages[room_mark:]
                if m["type"] == "lesson"] == ["ended"]
    finally:
        await teacher.close()
        await room.close()
        await server.close()


# --- generated docs and schema ---------------------------------------------------------------
def test_docs_and_schema_match_the_code():
    assert protocol_docs.stale() == [], "python -m signaling.protocol_docs --write"


def test_docs_name_every_message_field_and_error():
    text = protocol_docs.markdown()
    for cls in core.MESSAGES + STAGE + QUIZ:
        tag = cls.__struct_config__.tag
        if issubclass(cls, WelcomeFields):  # listed under welcome
            tag = "welcome"
        assert f"### `{tag}` (" in text
        for field in msgspec.structs.fields(cls):
            assert f"| `{field.encode_name}` |" in text, (tag, field.name)
    for code in ErrorCode:
        assert f"| `{code.value}` |" in text
    assert "| `media` | [MediaInfo]" in text  # welcome.media, once missing from the README
    schema = protocol_docs.json_schema()
    client = {r["$ref"].rsplit("/", 1)[1] for r in schema["$defs"]["ClientMessage"]["anyOf"]}
    assert {"Hello", "QuizAnswer", "GridView"} <= client
    assert issubclass(core.Hello, ClientMessage)


async def test_schema_is_served_as_a_static_file():
    server = await start_server()
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(server.base_url + "/static/protocol.schema.json") as resp:
            assert resp.status == 200
            assert json.loads(await resp.text()) == protocol_docs.json_schema()
    finally:
        await server.close()
