"""The glass message on a real server (no media): validation, rate limit, roles, outcomes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from signaling.glass import SAMPLES
from tests.helpers import start_server

LESSON = "glass-server"


@pytest.fixture
async def server():
    srv = await start_server()
    yield srv
    await srv.close()


async def joined(http: aiohttp.ClientSession, server, role: str) -> Any:
    ws = await http.ws_connect(server.base_url + "/ws")
    await ws.send_json({"type": "hello", "token": server.token(role, LESSON, school="s"),
                        "lesson": LESSON})
    while (await ws.receive_json(timeout=5))["type"] != "welcome":
        pass
    return ws


async def answer(ws: Any, msg: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The errors answering ``msg`` (up to the barrier pong after it; lesson events such
    as roster are not answers)."""
    await ws.send_json(msg)
    await ws.send_json({"type": "ping", "ts": n})
    out = []
    while True:
        data = json.loads((await ws.receive(timeout=5)).data)
        if data["type"] == "pong" and data.get("ts") == n:
            return out
        if data["type"] == "error":
            out.append(data)


def outcome(result: str) -> float:
    return SAMPLES.labels(result=result)._value.get()


def sample(**changes: Any) -> dict[str, Any]:
    return {"kind": "video", "ssrc": 1234, "rtp": 5678, "at_ms": time.time() * 1000,
            **changes}


async def test_glass_validation_rate_limit_and_outcomes(server) -> None:
    async with aiohttp.ClientSession() as http:
        room = await joined(http, server, "classroom")
        codes = []
        for n, body in enumerate([
                {"offset_ms": 1e12, "rtt_ms": 1},  # a clock a day away
                {"offset_ms": 0, "rtt_ms": -1},
                {"offset_ms": 0, "rtt_ms": 1, "samples": [sample(kind="screen")]},
                {"offset_ms": 0, "rtt_ms": 1, "samples": [sample(ssrc=1 << 32)]},
                {"offset_ms": 0, "rtt_ms": 1, "samples": [sample()] * 5}]):
            errors = await answer(room, {"type": "glass", **body}, n)
            codes.append([(e["code"], e.get("ref")) for e in errors])
        assert codes == [[("bad_message", "glass")]] * 5

        # no teacher clock yet: counted, not observed
        before = outcome("no_teacher_clock")
        assert await answer(room, {"type": "glass", "offset_ms": 0, "rtt_ms": 1,
                                   "samples": [sample()]}, 10) == []
        assert outcome("no_teacher_clock") == before + 1
        # a second report within the second
        errors = await answer(room, {"type": "glass", "offset_ms": 0, "rtt_ms": 1}, 11)
        assert [(e["code"], e.get("ref")) for e in errors] == [("rate_limited", "glass")]

        teacher = await joined(http, server, "teacher")
        assert await answer(teacher, {"type": "glass", "offset_ms": 3.5, "rtt_ms": 2}, 12) == []
        student = await joined(http, server, "student")
        errors = await answer(student, {"type": "glass", "offset_ms": 0, "rtt_ms": 1}, 13)
        assert [e["code"] for e in errors] == ["forbidden"]

        await asyncio.sleep(1.05)  # the rate limit: one report a second
        before = {r: outcome(r) for r in ("unknown_frame", "stale", "repeated")}
        assert await answer(room, {"type": "glass", "offset_ms": 0, "rtt_ms": 1, "samples": [
            sample(rtp=1), sample(kind="audio", at_ms=(time.time() - 60) * 1000)]}, 14) == []
        await asyncio.sleep(1.05)
        await answer(room, {"type": "glass", "offset_ms": 0, "rtt_ms": 1,
                            "samples": [sample(rtp=1)]}, 15)
        # no media connection: the frame is not one the relay sent this classroom
        assert outcome("unknown_frame") == before["unknown_frame"] + 1
        assert outcome("stale") == before["stale"] + 1
        assert outcome("repeated") == before["repeated"] + 1

        headers = {"Authorization": "Bearer " + server.token("teacher", LESSON)}
        async with http.get(f"{server.base_url}/api/lessons/{LESSON}/glass",
                            headers=headers) as resp:
            assert resp.status == 200
            assert await resp.json() == {"lesson": LESSON, "classrooms": {}}
        headers = {"Authorization": "Bearer " + server.token("classroom", LESSON)}
        async with http.get(f"{server.base_url}/api/lessons/{LESSON}/glass",
                            headers=headers) as resp:
            assert resp.status == 403
        for ws in (room, teacher, student):
            await ws.close()
