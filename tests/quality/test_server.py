"""Quality reports through the real server (both store backends): accepted reports reach
/metrics with school and role labels only, refusals are told with a ref and the socket
stays usable, the teacher sees the classroom's tile mark, the lesson's summaries are kept,
and /metrics of a running lesson passes ``promtool check metrics``."""

from __future__ import annotations

import re
import shutil
import subprocess

import aiohttp
import pytest

from classroom_client import ClassroomClient
from signaling import quality
from tests.helpers import eventually, start_server

REPORT = {"type": "quality", "epoch": "page1", "seq": 1, "interval_ms": 10000,
          "tier": "high", "video_tracks": 1, "audio_tracks": 1, "frames_received": 300,
          "frames_decoded": 299, "freezes": 0, "freeze_ms": 0, "video_lost": 2,
          "audio_samples": 480000, "audio_concealed": 0, "audio_lost": 0,
          "jitter_audio_ms": 40, "jitter_video_ms": 70, "rtt_ms": 20}


@pytest.fixture
async def server(backend):
    srv = await start_server(redis_url=backend, presence_ttl=2.0, roster_poll=0.3)
    yield srv
    await srv.close()


async def metrics_text(server) -> str:
    async with aiohttp.ClientSession() as http, http.get(server.base_url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series of the exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        inside = line[len(name) + 1:].rsplit("}", 1)[0]
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', inside))
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def refused(client: ClassroomClient, message: dict, code: str) -> dict:
    mark = len(client.messages)
    await client.send(message)
    err = await client.next_message("error", since=mark)
    assert err["code"] == code and err.get("ref") == "quality", err
    assert (await client.request({"type": "ping", "ts": 7}, "pong"))["ts"] == 7
    return err


async def test_reports_reach_metrics_marks_and_summaries(server, monkeypatch):
    school = "quality-test-村小"
    teacher = ClassroomClient(server.base_url, server.token("teacher", school="city"))
    room = ClassroomClient(server.base_url, server.token("classroom", name="三年级一班",
                                                         school=school))
    student = ClassroomClient(server.base_url, server.token("student", school=school))
    for c in (teacher, room, student):
        await c.connect()
    try:
        await teacher.start_lesson()
        before = await metrics_text(server)
        await room.send(REPORT)
        # the first report of a page counts everything since it loaded
        await eventually(lambda: _grew(server, before, "classroom_client_frames_decoded_total",
                                       299, school=school, role="classroom"))
        # at most one per ~5 s per socket
        await refused(room, {**REPORT, "seq": 2}, "rate_limited")
        monkeypatch.setattr(quality, "MIN_INTERVAL", 0.0)  # the rest here: no waits
        # absurd: a freeze longer than the time since the last report
        err = await refused(room, {**REPORT, "seq": 3, "freezes": 2, "freeze_ms": 60_000},
                            "bad_message")
        assert "frozen longer than the interval" in err["message"]
        await refused(room, {**REPORT, "seq": 3, "rtt_ms": 61_000}, "bad_message")
        await refused(room, {**REPORT, "seq": 3, "freezes": -1}, "bad_message")
        # a student's page plays no media and may not report
        await refused(student, REPORT, "forbidden")
        # a freeze that fits: the teacher's tile of this classroom turns fair
        mark = len(teacher.messages)
        await room.send({**REPORT, "seq": 4, "frames_received": 310, "frames_decoded": 309,
                         "freezes": 1, "freeze_ms": 50, "audio_samples": 480480})
        got = await teacher.next_message("quality-mark", since=mark,
                                         where=lambda m: m["peer_id"] == room.peer_id)
        assert (got["mark"], got["reason"]) == ("fair", "freezes")
        assert "to" not in got
        # a repeated report changes nothing
        await room.send({**REPORT, "seq": 4, "frames_received": 310, "frames_decoded": 309,
                         "freezes": 1, "freeze_ms": 50, "audio_samples": 480480})
        assert (await room.request({"type": "ping", "ts": 8}, "pong"))["ts"] == 8
        text = await metrics_text(server)
        lab = {"school": school, "role": "classroom"}
        assert sample(text, "classroom_client_frames_decoded_total", **lab) - sample(
            before, "classroom_client_frames_decoded_total", **lab) == 309
        assert sample(text, "classroom_client_freezes_total", **lab) - sample(
            before, "classroom_client_freezes_total", **lab) == 1
        assert sample(text, "classroom_client_freeze_seconds_total", **lab) - sample(
            before, "classroom_client_freeze_seconds_total", **lab) == pytest.approx(0.05)
        assert sample(text, "classroom_client_packets_lost_total", kind="video", **lab) >= 2
        assert sample(text, "classroom_client_rtt_seconds_count", **lab) >= 2
        assert sample(text, "classroom_client_jitter_buffer_delay_seconds_count",
                      kind="audio", **lab) >= 2
        assert sample(text, "classroom_client_tier_seconds_total", school=school,
                      tier="high") >= 10
        assert sample(text, "classroom_client_reports_total", role="classroom",
                      result="rate_limited") >= 1
        assert sample(text, "classroom_client_reports_total", role="student",
                      result="refused") == 0  # refused by the table, before the feature
        assert room.peer_id not in text and "lesson=" not in text
        for kind in ("quality-mark", "welcome", "error"):  # every message we sent is declared
            assert sample(text, "classroom_protocol_outgoing_invalid_total", type=kind) == 0
        # a teacher joining later gets the marks in welcome
        late = ClassroomClient(server.base_url, server.token("teacher", school="city"))
        await late.connect()
        assert {m["peer_id"]: m["mark"] for m in late.welcome["quality_marks"]} == {
            room.peer_id: "fair"}
        await late.close()
        # the lesson's summary (what usage statistics read)
        headers = {"Authorization": "Bearer " + server.token("teacher")}
        async with aiohttp.ClientSession() as http, http.get(
                server.base_url + "/api/lessons/math-1/quality", headers=headers) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        rooms = body["classrooms"]
        summary = next(v for v in rooms.values() if v["role"] == "classroom")
        assert summary["name"] == "三年级一班" and summary["school"] == school
        assert summary["reports"] == 2 and summary["freezes"] == 1
        assert summary["frames_decoded"] == 309 and summary["mark"] == "fair"
        assert summary["seconds"] >= 10 and summary["tier:high"] >= 10
        async with aiohttp.ClientSession() as http, http.get(
                server.base_url + "/api/lessons/math-1/quality",
                headers={"Authorization": "Bearer " + server.token("classroom")}) as r:
            assert r.status == 403
        # leaving clears its mark on the teacher's console
        mark = len(teacher.messages)
        await room.close()
        gone = await teacher.next_message("quality-mark", since=mark)
        assert gone["peer_id"] == room.peer_id and gone["mark"] is None
    finally:
        for c in (teacher, room, student):
            await c.close()


def _grew(server, before: str, name: str, by: float, **labels: str):
    async def check() -> bool:
        return sample(await metrics_text(server), name, **labels) - sample(
            before, name, **labels) == by
    return check()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
async def test_promtool_check_metrics_is_clean(server):
    teacher = ClassroomClient(server.base_url, server.token("teacher", school="city"))
    room = ClassroomClient(server.base_url, server.token("classroom", school="promtool-小学"))
    nameless = ClassroomClient(server.base_url, server.token("classroom"))
    for c in (teacher, room, nameless):
        await c.connect()
    try:
        await teacher.start_lesson()
        for c in (room, nameless, teacher):
            await c.send({**REPORT, "tier": None if c is teacher else "audio"})
            await c.request({"type": "ping"}, "pong")
        text = await metrics_text(server)
        assert 'school="unknown"' in text and 'tier="audio-only"' in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=30)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
            check.stdout.decode() + check.stderr.decode())
    finally:
        for c in (teacher, room, nameless):
            await c.close()
