"""Authorization, tested from its one table (signaling/authz.py) against the real server.

Every HTTP route and every WebSocket message is tried with every principal: each role
scoped to lesson A, each role of another school in lesson A, each role of lesson B, and the
'*' admin and ops. Allowed must not be refused (nor fail with 500/internal); refused must
be 403 forbidden/wrong_lesson (404 for a recording the token may not see).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling import authz
from signaling.auth import Role, verify_token
from tests.helpers import start_server

A, B = "lesson-a", "lesson-b"
LESSON_ROLES = [r for r in Role if not r.lessonless]
"""Roles whose tokens name a lesson (school_admin's names none: lesson '*')."""
S1, S2, OTHER = "山村小学", "河口教学点", "别的学校"
SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
QSET = {"format": "classroom-quiz", "version": 1, "title": "t", "questions": [
    {"id": "q1", "type": "single", "text": "1+1?", "options": ["1", "2"], "answer": 1},
    {"id": "q2", "type": "truefalse", "text": "0.5 = 1/2", "answer": True}]}


def principals(server) -> dict[str, str]:
    """name -> token: every role in lesson A (school S1), of another school, of lesson B,
    and the '*' admin and ops."""
    out = {}
    for role in LESSON_ROLES:
        out[f"{role.value}@A"] = server.token(role.value, A, school=S1, sub=f"{role.value}-a")
        out[f"{role.value}@A/other-school"] = server.token(role.value, A, school=OTHER,
                                                           sub=f"{role.value}-o")
        out[f"{role.value}@B"] = server.token(role.value, B, school=S1, sub=f"{role.value}-b")
    out["admin@*"] = server.token("admin", "*")
    out["ops@*"] = server.token("ops", "*")
    out["school_admin@S1"] = server.token("school_admin", "*", school=S1)
    return out


RECORD_A = {"lesson": A, "title": "A", "subject": "数学", "grade": "三年级", "teacher": "王",
            "school": S1, "schools": [S1, S2], "published": False, "date": "2025-01-01",
            "started_at": 1.0, "ended_at": 2.0, "duration": 1.0, "chapters": [],
            "renditions": [], "size": 0, "state": "failed"}


def fresh_recording(server, rid: str) -> dict[str, Any]:
    feature = next(f for f in server.node.features if f.name == "recording")
    record = {**RECORD_A, "id": rid}
    feature.catalog.put(record)
    return record


@pytest.fixture
async def server():
    srv = await start_server(messages_per_second=2000.0, message_burst=2000.0)
    yield srv
    await srv.close()


# the table itself ---------------------------------------------------------------------------
async def test_every_route_and_message_has_its_row(server):
    """No route or message outside the table; every guarded handler names its own row;
    the roles the message schemas declare are the table's."""
    http_rows = {k for k in authz.TABLE if not k.startswith("ws ")}
    seen = set()
    for route in server.app.router.routes():
        if route.method == "HEAD":
            continue
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.resource.canonical)
        key = f"{route.method} {path}"
        assert key in authz.TABLE, f"{key} has no authorization row"
        marked = getattr(route.handler, "authz_action", None)
        assert marked in (key, None), f"{key} is guarded as {marked}"
        if marked is None:
            assert not authz.TABLE[key].roles, f"{key} needs a token but is not guarded"
        seen.add(key)
    assert seen == http_rows
    for msg_type, spec in server.node.schemas.items():
        assert spec.roles == authz.message_roles(msg_type), msg_type
    ws_types = {k[3:].split(":")[0] for k in authz.TABLE if k.startswith("ws ")}
    assert ws_types == set(server.node.schemas)


def test_security_doc_holds_the_table():
    text = SECURITY_DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- authz-table -->\n(.*?)<!-- /authz-table -->", text, re.S)
    assert block is not None, "docs/security.md lacks the <!-- authz-table --> block"
    assert block.group(1) == authz.markdown(), (
        "docs/security.md's table differs: python -m signaling.authz --write")


# HTTP, exhaustively -------------------------------------------------------------------------
def http_case(server, action: str, n: int) -> tuple[str, str, Any]:
    """method, path and JSON body for one try of ``action`` (a new recording for each)."""
    method, path = action.split(" ", 1)
    body: Any = None
    if "{recording}" in path:
        rid = f"{A}-20250101-{n:06d}"
        fresh_recording(server, rid)
        path = path.replace("{recording}", rid)
        body = {"title": "新"} if method == "PATCH" else ({"ttl": 60} if method == "POST"
                                                           else None)
    path = path.replace("{lesson}", A)
    if action == "POST /api/lessons":
        body = {"id": A, "title": "A"}
    elif action == "POST /api/tokens":
        body = {"role": "classroom", "lesson": A, "school": S1, "ttl": 60}
    elif action.endswith("/caps"):
        body = {"school": S1, "kbps": 500}
    elif action.endswith("/quiz/set") and method in ("PUT", "POST"):
        body = QSET
    return method, path, body


def expected(action: str, claims, record: dict[str, Any] | None) -> bool:
    """Allowed, by the table's columns."""
    rule = authz.TABLE[action]
    if claims.role not in rule.roles:
        return False
    if rule.lesson in (authz.Lesson.PATH, authz.Lesson.BODY) and not authz.in_lesson(claims, A):
        return False
    if rule.school == authz.School.MINT and claims.lesson != "*" and claims.school != S1:
        return False
    if rule.lesson == authz.Lesson.RECORD:
        if not authz.may_see_recording(claims, record):
            return False
        return rule.roles == authz.ALL or authz.may_edit_recording(claims, record)
    return True


async def test_every_route_by_every_principal(server):
    actions = [k for k, r in authz.TABLE.items() if not k.startswith("ws ") and r.roles]
    tokens = principals(server)
    results: list[str] = []
    n = 0
    async with aiohttp.ClientSession() as http:
        for action in actions:
            for who, token in tokens.items():
                n += 1
                method, path, body = http_case(server, action, n)
                claims = verify_token(server.secret, token)
                record = {**RECORD_A} if "{recording}" in action else None
                allow = expected(action, claims, record)
                async with http.request(method, server.base_url + path, json=body,
                                        headers={"Authorization": f"Bearer {token}"}) as r:
                    status = r.status
                    code = ""
                    if status >= 400:
                        code = (await r.json())["error"]["code"]
                refused = status in (401, 403) or (status == 404 and "{recording}" in action)
                if (authz.TABLE[action].school == authz.School.SCOPE and status == 403
                        and authz.school_scope(claims) is not None):
                    refused = False  # an object-level rule (may_administer), not the row
                ok = (not refused and status < 500) if allow else (
                    status in (403, 404) and code in ("forbidden", "wrong_lesson", "not_found"))
                if not ok:
                    results.append(f"{action} as {who}: {status} {code} (table: "
                                   f"{'allow' if allow else 'deny'})")
    assert not results, "\n".join(results)
    assert n == len(actions) * len(tokens) >= 16 * 17


async def test_token_required_and_signed_links(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base_url + "/api/relay") as r:
            assert (r.status, (await r.json())["error"]["code"]) == (401, "not_authenticated")
        rid = f"{A}-20250101-999999"
        fresh_recording(server, rid)
        async with http.get(f"{server.base_url}/api/replay/{rid}?exp=1&sig=x") as r:
            assert r.status == 403


# WebSocket, exhaustively --------------------------------------------------------------------
def sample_message(action: str, token: str, schemas) -> dict[str, Any]:
    msg_type, _, purpose = action[3:].partition(":")
    msg: dict[str, Any] = {"type": msg_type}
    for name, fs in schemas[msg_type].fields.items():
        if not fs.required:
            continue
        kind = fs.kind[0] if isinstance(fs.kind, tuple) else fs.kind
        msg[name] = (fs.choices[0] if fs.choices else
                     {str: "x", bool: True, int: 0, float: 1.0, list: [], dict: {}}[kind])
    if purpose:
        msg["purpose"] = purpose
    if msg_type == "offer":
        msg["sdp"] = "v=0\r\n"
    if msg_type == "refresh":
        msg["token"] = token
    return msg


OBJECT_RULES = {("ws leave-stage", Role.CLASSROOM)}
"""Allowed by the table, refused by the object: a classroom leaves the stage only when it is
the one on it (it is not, here)."""


async def replies_to(ws, msg: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """What the server answers to ``msg`` up to the pong that follows it: a refusal by the
    table is told before any later message is handled (handlers.py checks before its
    lanes); other replies of a message handled in a lane may come later."""
    await ws.send_json(msg)
    await ws.send_json({"type": "ping", "ts": n})
    out = []
    deadline = time.monotonic() + 10
    while True:
        frame = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        assert frame.type == aiohttp.WSMsgType.TEXT, f"socket closed after {msg}: {frame}"
        data = json.loads(frame.data)
        if data["type"] == "pong" and data.get("ts") == n:
            return out
        out.append(data)


async def test_every_message_by_every_role(server):
    actions = [k for k in authz.TABLE if k.startswith("ws ") and k != "ws hello"]
    schemas = server.node.schemas
    problems: list[str] = []
    n = 0
    async with aiohttp.ClientSession() as http:
        for role in LESSON_ROLES:
            token = server.token(role.value, A, school=S1)
            async with http.ws_connect(server.base_url + "/ws") as ws:
                await ws.send_json({"type": "hello", "token": token, "lesson": A})
                while (await ws.receive_json(timeout=5))["type"] != "welcome":
                    pass
                for action in actions:
                    n += 1
                    msg = sample_message(action, token, schemas)
                    errors = [m for m in await replies_to(ws, msg, n)
                              if m["type"] == "error" and m.get("ref") == msg["type"]]
                    codes = {m["code"] for m in errors}
                    allow = role in authz.TABLE[action].roles
                    if (action, role) in OBJECT_RULES:
                        codes -= {"forbidden"}
                    if allow and codes & {"forbidden", "wrong_lesson", "internal"}:
                        problems.append(f"{action} by {role.value}: refused {codes}")
                    if not allow and "forbidden" not in codes:
                        problems.append(f"{action} by {role.value}: {codes or 'accepted'}")
    assert not problems, "\n".join(problems)
    assert n == len(actions) * len(LESSON_ROLES)


@pytest.mark.parametrize("who", ["admin@*", "ops@*", "teacher@B", "student@B"])
async def test_socket_refuses_star_and_other_lesson_tokens(server, who):
    token = principals(server)[who]
    async with aiohttp.ClientSession() as http, http.ws_connect(server.base_url + "/ws") as ws:
        await ws.send_json({"type": "hello", "token": token, "lesson": A})
        msg = await ws.receive_json(timeout=5)
        assert (msg["type"], msg["code"]) == ("error", "wrong_lesson")


# the findings of issue 18, one by one -------------------------------------------------------
async def call(http, server, method: str, path: str, token: str, body: Any = None):
    async with http.request(method, server.base_url + path, json=body,
                            headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def test_answer_key_stays_with_teachers_until_the_reveal(server):
    from classroom_client import ClassroomClient

    teacher = ClassroomClient(server.base_url, server.token("teacher", A))
    pupils = [ClassroomClient(server.base_url, server.token("student", A, sub=f"s{i}",
                                                             name=f"学生{i}")) for i in (1, 2)]
    async with aiohttp.ClientSession() as http:
        assert (await call(http, server, "PUT", f"/api/lessons/{A}/quiz/set",
                           server.token("teacher", A), QSET))[0] == 200
        try:
            await teacher.connect()
            for p in pupils:
                await p.connect()
            rnd = (await teacher.request({"type": "open-test", "duration": 600},
                                         "quiz-test"))["round"]
            for i, p in enumerate(pupils):
                await p.request({"type": "quiz-answer", "answer_id": f"answer-{i}-0001",
                                 "round_id": rnd["round_id"], "question_id": "q1",
                                 "value": i}, "quiz-ack")
            for role in ("student", "classroom"):
                status, rep = await call(http, server, "GET", f"/api/lessons/{A}/quiz/report",
                                         server.token(role, A, sub="s1"))
                assert status == 200
                assert all(q.get("answer") is None and q.get("correct_option") is None
                           for q in rep["questions"]), rep["questions"]
                assert all(row["correct"] is None and row["score"] is None
                           for row in rep["answers"])
                assert rep["totals"]["correct"] == 0
            status, csv = await call_text(http, server, f"/api/lessons/{A}/quiz/report.csv",
                                          server.token("student", A, sub="s1"))
            assert status == 200 and "q1" in csv and "q2" not in csv
            for role in ("teacher", "admin", "ops"):
                status, rep = await call(http, server, "GET", f"/api/lessons/{A}/quiz/report",
                                         server.token(role, A))
                assert {q["question_id"]: q["correct_option"] for q in rep["questions"]} == {
                    "q1": 1, "q2": 0}
            await teacher.request({"type": "reveal"}, "quiz-reveal")
            status, rep = await call(http, server, "GET", f"/api/lessons/{A}/quiz/report",
                                     server.token("student", A, sub="s2"))
            assert {q["question_id"]: q["correct_option"] for q in rep["questions"]}["q1"] == 1
            # a pupil's report holds that pupil only: no other pupil, no ranking
            assert [s["id"] for s in rep["students"]] == ["s2"]
            assert {row["id"] for row in rep["answers"]} == {"s2"}
            assert "s1" not in json.dumps(rep) and "学生1" not in json.dumps(rep)
            assert rep["answers"][0]["correct"] == 1
        finally:
            for c in (teacher, *pupils):
                await c.close()


async def call_text(http, server, path: str, token: str) -> tuple[int, str]:
    async with http.get(server.base_url + path,
                        headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.text()


async def test_lesson_admin_and_ops_stay_in_their_lesson_and_school(server):
    lesson_admin = server.token("admin", A, school=S1)
    lesson_ops = server.token("ops", A)
    rid_b = f"{B}-20250101-000001"
    fresh_recording(server, rid_b)
    feature = next(f for f in server.node.features if f.name == "recording")
    feature.catalog.update(rid_b, lesson=B, school=S2, schools=[S2])
    async with aiohttp.ClientSession() as http:
        for body in ({"role": "admin", "lesson": "*"}, {"role": "ops", "lesson": "*"},
                     {"role": "teacher", "lesson": B, "school": S1},
                     {"role": "teacher", "lesson": A, "school": S2},
                     {"role": "teacher", "lesson": A, "school": S1, "ttl": 10 * 86400}):
            status, reply = await call(http, server, "POST", "/api/tokens", lesson_admin, body)
            assert status == 403 and reply["error"]["code"] in ("forbidden", "wrong_lesson"), body
        status, reply = await call(http, server, "POST", "/api/tokens", lesson_admin,
                                   {"role": "classroom"})
        minted = verify_token(server.secret, reply["token"])
        assert status == 201 and (minted.lesson, minted.school) == (A, S1)
        assert minted.exp <= verify_token(server.secret, lesson_admin).exp
        for method, body in (("PATCH", {"title": "x"}), ("DELETE", None),
                             ("GET", None), ("POST", {"ttl": 60})):
            path = f"/api/recordings/{rid_b}" + ("/link" if method == "POST" else "")
            status, reply = await call(http, server, method, path, lesson_admin, body)
            assert (status, reply["error"]["code"]) == (404, "not_found"), method
        assert feature.catalog.get(rid_b)["title"] == "A"
        status, reply = await call(http, server, "GET", "/api/recordings", lesson_ops)
        assert status == 200 and rid_b not in {r["id"] for r in reply["recordings"]}
        status, reply = await call(http, server, "GET", "/api/recordings",
                                   server.token("ops", "*"))
        assert rid_b in {r["id"] for r in reply["recordings"]}
        server.node.relay._lesson(B)  # the relay's own lesson B (as a first offer makes it)
        status, stats = await call(http, server, "GET", "/api/relay", lesson_ops)
        assert status == 200 and B not in stats["lessons"] and "publishers" not in stats
        status, stats = await call(http, server, "GET", "/api/relay", server.token("ops", "*"))
        assert B in stats["lessons"]
