"""Fixtures for the quiz tests: a real server per backend and connected clients."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from classroom_client import ClassroomClient
from tests.helpers import start_server

LESSON = "math-1"

SAMPLE_SET = {
    "format": "classroom-quiz",
    "version": 1,
    "title": "分数的认识",
    "questions": [
        {"id": "q1", "type": "single", "text": "1/2 + 1/4 = ?",
         "options": ["1/6", "3/4", "2/6"], "answer": 1, "points": 2,
         "explanation": "通分：2/4 + 1/4 = 3/4"},
        {"id": "q2", "type": "truefalse", "text": "0.5 = 1/2", "answer": True},
        {"id": "q3", "type": "multiple", "text": "哪些等于 1/2?",
         "options": ["2/4", "3/6", "2/3", "5/10"], "answer": [0, 1, 3]},
        {"id": "q4", "type": "fill", "text": "一半写成分数是 ___", "answer": ["1/2", "二分之一"]},
        {"id": "q5", "type": "numeric", "text": "π ≈ ? (两位小数)", "answer": 3.14,
         "tolerance": 0.005},
    ],
}


@pytest.fixture
async def server(backend):
    srv = await start_server(redis_url=backend, presence_ttl=2.0, roster_poll=0.3)
    yield srv
    await srv.close()


class Clients:
    """Connects clients and closes them all at the end of the test."""

    def __init__(self, server) -> None:
        self.server = server
        self.all: list[ClassroomClient] = []

    async def connect(self, role: str, lesson: str = LESSON, server=None, token=None,
                      **claims) -> ClassroomClient:
        srv = server or self.server
        client = ClassroomClient(srv.base_url, token or srv.token(role, lesson, **claims))
        self.all.append(client)
        await client.connect()
        return client

    async def close(self) -> None:
        for c in self.all:
            await c.close()


@pytest.fixture
async def clients(server):
    c = Clients(server)
    yield c
    await c.close()


async def http(server, method: str, path: str, token: str, **kw):
    async with aiohttp.ClientSession() as s, s.request(
        method, server.base_url + path, headers={"Authorization": f"Bearer {token}"}, **kw
    ) as resp:
        body = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
        data = await resp.json() if "json" in ctype else body.decode("utf-8")
        return resp.status, data


async def put_set(server, qset=SAMPLE_SET, lesson: str = LESSON):
    status, body = await http(server, "PUT", f"/api/lessons/{lesson}/quiz/set",
                              server.token("teacher", lesson), json=qset)
    assert status == 200, body
    return body


async def report(server, role: str = "teacher", lesson: str = LESSON, **claims):
    status, body = await http(server, "GET", f"/api/lessons/{lesson}/quiz/report",
                              server.token(role, lesson, **claims))
    assert status == 200, body
    return body


def aid() -> str:
    return uuid.uuid4().hex


async def answer(client, rnd, qid, value=None, tally=None, answer_id=None, **extra):
    msg = {"type": "quiz-answer", "answer_id": answer_id or aid(),
           "round_id": rnd if isinstance(rnd, str) else rnd["round_id"], "question_id": qid,
           **extra}
    if value is not None:
        msg["value"] = value
    if tally is not None:
        msg["tally"] = tally
    return await client.request(msg, "quiz-ack")
