"""Input that used to reach ``internal`` (issue 18): each gets its own code, and the
server logs no traceback. The frame limit counts bytes and always answers too_large, then
closes with 1009."""

from __future__ import annotations

import json
import logging
import re

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from classroom_client import ClassroomClient
from signaling.protocol import MAX_MESSAGE_BYTES
from signaling.quiz import questions, scoring
from tests.helpers import start_server

LESSON = "math-1"


@pytest.fixture
async def server():
    srv = await start_server(hello_timeout=5.0)
    yield srv
    await srv.close()


@pytest.fixture
def no_tracebacks(caplog):
    """Fail the test if the server logged an error with a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


async def connect(server, role: str, **claims) -> ClassroomClient:
    client = ClassroomClient(server.base_url, server.token(role, LESSON, **claims))
    await client.connect()
    return client


async def reply_to(client: ClassroomClient, raw: str) -> dict:
    """Send one raw frame; the first error it caused, or the pong of a ping sent after it."""
    mark = len(client.messages)
    await client.send_raw(raw)
    await client.send({"type": "ping", "ts": "barrier"})
    return await client.next_message(("error", "pong"), since=mark, timeout=10)


def frame_of_bytes(size: int, char: str = "x") -> str:
    """A ping frame of exactly ``size`` UTF-8 bytes (its ts padded with ``char``)."""
    head, tail = '{"type":"ping","ts":"', '"}'
    room = size - len(head) - len(tail)
    width = len(char.encode())
    return head + char * (room // width) + "x" * (room % width) + tail


async def raw_socket(server) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws",
                                  max_msg_size=0)
    await ws.send_str(json.dumps({"type": "hello", "token": server.token("classroom", LESSON)}))
    welcome = json.loads((await ws.receive(timeout=10)).data)
    assert welcome["type"] == "welcome"
    return session, ws


@pytest.mark.parametrize("size,char", [
    (MAX_MESSAGE_BYTES + 1, "x"),
    (66_000, "x"),          # used to get too_large without the close
    (100_000, "x"),         # used to be closed with no message
    (22_000 * 3, "中"),      # 22,000 characters, 66,000 bytes: the limit counts bytes
    (2_000_000, "x"),       # over aiohttp's own cap: still told too_large first
])
async def test_oversize_frame_is_told_too_large_then_closed(server, no_tracebacks, size, char):
    session, ws = await raw_socket(server)
    try:
        frame = frame_of_bytes(size, char)
        assert len(frame.encode()) == size
        await ws.send_str(frame)
        errors = []
        for _ in range(50):  # lesson events may come first; the close ends the loop
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if json.loads(msg.data)["type"] == "error":
                errors.append(json.loads(msg.data)["code"])
        assert errors == ["too_large"]
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    finally:
        await ws.close()
        await session.close()


async def test_frame_of_exactly_the_limit_is_parsed(server, no_tracebacks):
    room = await connect(server, "classroom")
    reply = await reply_to(room, frame_of_bytes(MAX_MESSAGE_BYTES, "é"))
    assert reply["type"] == "error" and reply["code"] == "bad_message"  # ts over 64 chars
    assert not room.closed
    await room.close()


@pytest.mark.parametrize("raw", [
    '{"type":"ping","ts":NaN}',
    '{"type":"ping","ts":-Infinity}',
    '{"type":"ping","ts":1e400}',
    '{"type":"ping","ts":' + "[" * 1000 + "]" * 1000 + "}",
    '{"type":"ping","ts":' + "[" * 30000 + "}",
    '{"type":"ping","ts":' + "9" * 400 + "}",
    '{"type":"ping","ts":"\\udc00"}',
    '{"type":"quiz-answer","answer_id":"abcdefgh12","round_id":"r","question_id":"q",'
    '"value":1' + "0" * 400 + "}",
])
async def test_refused_json_values_are_bad_json(server, no_tracebacks, raw):
    room = await connect(server, "classroom")
    reply = await reply_to(room, raw)
    assert reply["type"] == "error" and reply["code"] == "bad_json", reply
    assert (await room.request({"type": "ping", "ts": 1.5}, "pong"))["ts"] == 1.5
    await room.close()


async def test_lone_surrogate_token_is_refused(server, no_tracebacks):
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
        await ws.send_str('{"type":"hello","token":"eyJ\\ud800.x.y"}')
        reply = json.loads((await ws.receive(timeout=10)).data)
        assert reply["code"] in ("bad_json", "invalid_token")
        await ws.close()
        headers = {"Authorization": "Bearer eyJ\udcff.x.y".encode("utf-8", "surrogateescape")
                   .decode("latin-1")}
        async with session.get(server.base_url + "/api/lessons", headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_token"
    finally:
        await session.close()


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/lessons"), ("PUT", f"/api/lessons/{LESSON}/quiz/set"),
    ("POST", "/api/tokens"), ("POST", f"/api/lessons/{LESSON}/caps"),
])
async def test_deep_or_non_finite_bodies_are_400(server, no_tracebacks, method, path):
    token = server.token("admin", LESSON)
    async with aiohttp.ClientSession() as session:
        for body in ("[" * 1000 + "]" * 1000, '{"title": NaN}', '{"x": 1e999}',
                     '{"questions": [{"answer": ' + "1" * 400 + "}]}"):
            async with session.request(method, server.base_url + path, data=body,
                                       headers={"Authorization": f"Bearer {token}",
                                                "Content-Type": "application/json"}) as resp:
                payload = await resp.json()
                assert resp.status == 400, (body[:40], payload)
                assert payload["error"]["code"] in ("bad_json", "quiz_set_invalid"), payload


def test_numbers_beyond_float_range_and_odd_tally_keys():
    assert pytest.raises(scoring.AnswerError, scoring.parse_number, 10**400).value.code \
        == "answer_invalid"
    with pytest.raises(questions.QuestionError):
        questions.validate_question({"id": "q", "type": "numeric", "text": "?",
                                     "answer": 10**400})
    with pytest.raises(questions.QuestionError):
        questions.validate_question({"id": "q", "type": "single", "text": "?",
                                     "options": ["a", "b"], "answer": 0, "points": 10**400})
    single = {"id": "q", "type": "single", "text": "?", "options": ["a", "b"], "answer": 0,
              "points": 1}
    for key in ("²", "①", "1" * 5000, "٣", " 1"):
        with pytest.raises(scoring.AnswerError):
            scoring.normalize_tally(single, {key: 1})
    assert scoring.normalize_tally(single, {"1": 2, "0": 1}) == {"1": 2, "0": 1}


async def test_odd_tally_keys_over_the_socket(server, no_tracebacks):
    teacher = await connect(server, "teacher")
    room = await connect(server, "classroom")
    question = {"id": "q1", "type": "single", "text": "1+1?", "options": ["1", "2"],
                "answer": 1}
    rnd = (await teacher.request({"type": "push-question", "question": question},
                                 "quiz-question"))["round"]
    for key in ("²", "①", "1" * 5000):
        reply = await reply_to(room, json.dumps({
            "type": "quiz-answer", "answer_id": f"ans-{len(key)}-{ord(key[0])}",
            "round_id": rnd["round_id"], "question_id": "q1", "tally": {key: 3}}))
        assert reply["type"] == "error" and reply["code"] == "answer_invalid", reply
    await room.close()
    await teacher.close()


async def _offer(kinds: list[str], direction: str) -> str:
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def _drop_section(sdp: str, index: int) -> str:
    head, *sections = re.split(r"\r\n(?=m=)", sdp.strip())
    del sections[index]
    return "\r\n".join([head, *sections]) + "\r\n"


def _drop_lines(sdp: str, prefix: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith(prefix))


async def test_broken_offers_are_bad_sdp(server, no_tracebacks):
    teacher = await connect(server, "teacher")
    room = await connect(server, "classroom")
    publish = await _offer(["video", "audio"], "sendonly")
    cases = [
        (teacher, "publish", _drop_section(publish, 1)),   # BUNDLE names a missing m-line
        (room, "uplink", _drop_section(publish, 0)),       # createAnswer then close raised
        (room, "uplink", _drop_section(publish, 1)),
        (teacher, "publish", _drop_lines(publish, "a=fingerprint")),
        (room, "uplink", _drop_lines(publish, "a=ice-pwd")),
        (teacher, "publish", publish.replace(" typ host", " typ hostile", 1)),
    ]
    for client, purpose, sdp in cases:
        reply = await reply_to(client, json.dumps({"type": "offer", "purpose": purpose,
                                                   "sdp": sdp}))
        assert reply["type"] == "error" and reply["code"] == "bad_sdp", (purpose, reply)
    # a whole offer still works afterwards
    answer = await room.request({"type": "offer", "purpose": "uplink", "sdp": publish},
                                "answer")
    assert answer["sdp"].startswith("v=0")
    await room.close()
    await teacher.close()


async def test_candidates_with_impossible_ports_are_bad_sdp(server, no_tracebacks):
    room = await connect(server, "classroom")
    offer = await _offer(["video", "audio"], "recvonly")
    await room.request({"type": "offer", "purpose": "subscribe", "sdp": offer}, "answer")
    base = "candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"
    bad = [base.format(port=65536), base.format(port=-1), base.format(port="x"),
           "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host raddr 1.2.3.4 rport 70000",
           "candidate:1 9999 udp 1 127.0.0.1 5000 typ host", "candidate:1 1 udp 1 a..b 5 typ host"]
    for line in bad:
        reply = await reply_to(room, json.dumps({"type": "ice", "purpose": "subscribe",
                                                 "candidate": line, "sdpMid": "0"}))
        assert reply["type"] == "error" and reply["code"] == "bad_sdp", (line, reply)
    ok = await reply_to(room, json.dumps({"type": "ice", "purpose": "subscribe",
                                          "candidate": base.format(port=5000), "sdpMid": "0"}))
    assert ok["type"] == "pong"
    await room.close()
