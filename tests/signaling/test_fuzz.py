"""`internal` is unreachable from input (issue 18): seeded, bounded fuzzing of every message
type from every role, and of the body of every JSON route, against a real server. Every
reply must carry a contract code other than ``internal`` and the server must log no
traceback."""

from __future__ import annotations

import json
import logging
import random
import re

import aiohttp
from aiortc import RTCPeerConnection

from classroom_client import ClassroomClient
from tests.helpers import start_server

LESSON = "math-1"
SEED = 18
FRAMES_PER_ROLE = 600
BODIES_PER_ROUTE = 40
BATCH = 25  # frames per fresh live lesson
MEDIA_FRAMES_PER_ROLE = 120  # offers and trickled candidates, teacher and classroom
ROLES = ("teacher", "classroom", "student", "ops", "admin")

_SPECIALS = {"__NAN__": "NaN", "__INF__": "-Infinity", "__HUGE_FLOAT__": "1e400",
             "__BIG_INT__": "1" + "0" * 400, "__DEEP__": "[" * 40 + "]" * 40,
             "__DEEPER__": "[" * 1200 + "]" * 1200}
_ODD = [None, True, False, 0, -1, 2**53, 2**60, 1.5, -0.0, 1e308, "", " ", "x" * 3000,
        "中" * 500, "²", "①", "٣", "\ud800", "\udfff\ud800", [], {}, [[[]]], {"a": {"b": [1]}},
        ["x"] * 50, list(range(300)), *_SPECIALS]


def _raw(message: dict) -> str:
    text = json.dumps(message)
    for marker, literal in _SPECIALS.items():
        text = text.replace(json.dumps(marker), literal)
    return text


def _plausible(rng: random.Random, name: str, spec, offers: list[str]) -> object:
    if spec is not None and spec.choices:
        return rng.choice(spec.choices)
    if name == "sdp":
        lines = rng.choice(offers).split("\r\n")
        for _ in range(rng.randint(1, 3)):
            i, how = rng.randrange(len(lines)), rng.random()
            if how < 0.4:
                lines.pop(i)
            elif how < 0.7:
                lines.insert(i, lines[i])
            else:
                lines[i] = lines[i][: rng.randint(0, 40)]
        return "\r\n".join(lines) if rng.random() < 0.9 else "v=0\r\n" + "a=x\r\n" * 50
    if name == "candidate":
        return rng.choice([
            "candidate:1 1 udp 2130706431 127.0.0.1 {} typ host".format(
                rng.choice([1, 5000, 65535, 65536, -1, 0, "x"])),
            "candidate:1 1 udp 1 ::1 9 typ relay raddr 1.2.3.4 rport 99999", "",
            "candidate:x", "a=candidate:1 1 tcp 1 host.local 9 typ host tcptype active"])
    if name == "question":
        q = {"id": rng.choice(["q1", "q2", "bad id", ""]),
             "type": rng.choice(["single", "multiple", "truefalse", "fill", "numeric", "x"]),
             "text": rng.choice(["1+1?", "", "中" * 50]),
             "options": rng.choice([["1", "2"], [], ["a"] * 11, [1, 2]]),
             "answer": rng.choice([0, 1, [0, 1], True, "2", 3.14, "__BIG_INT__", "__NAN__"])}
        if rng.random() < 0.5:
            q[rng.choice(["points", "tolerance", "unit", "image"])] = rng.choice(_ODD)
        return q
    if name == "tally":
        return {rng.choice(["0", "1", "²", "①", "1" * 5000, "-1", "01", " 1"]):
                rng.choice([1, 3, -1, 10**6, 1.5, "__BIG_INT__"])}
    if name == "question_ids":
        return rng.choice([["q1"], [], ["q1"] * 300, [1, None]])
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    kind = rng.choice(kinds)
    if kind is bool:
        return rng.random() < 0.5
    if kind is int:
        return rng.choice([0, 1, 7, 2**31, -5])
    if kind is float:
        return rng.choice([0.5, 30.0, 1e-9, 7200.0])
    if kind is str:
        return rng.choice(["q1", "r1", "abcdefgh1234", LESSON, "中文", "x" * 70])
    if kind is list:
        return rng.choice([[0], [0, 1], ["a"], [[0]]])
    if kind is dict:
        return {"0": 1}
    return None


def _frame(rng: random.Random, schemas: dict, offers: list[str], token: str) -> str:
    msg_type = rng.choice(list(schemas) + ["nope", "", 5])
    spec = schemas.get(msg_type) if isinstance(msg_type, str) else None
    message: dict = {"type": msg_type}
    for name, fs in (spec.fields.items() if spec else []):
        roll = rng.random()
        if roll < 0.08:
            continue  # missing
        if name == "token":
            message[name] = rng.choice([token, token[:-3] + "abc", "\ud800" + token, "x.y.z"])
        else:
            message[name] = _plausible(rng, name, fs, offers) if roll < 0.7 else rng.choice(_ODD)
    if rng.random() < 0.1:
        message[rng.choice(["extra", "type2", "__proto__"])] = rng.choice(_ODD)
    if rng.random() < 0.03:
        return rng.choice(["[]", "null", "{", '"x"', "{}" * 10, '{"type":"ping"}' + " " * 70000])
    return _raw(message)


async def _offers() -> list[str]:
    out = []
    for direction in ("sendonly", "recvonly"):
        pc = RTCPeerConnection()
        for kind in ("video", "audio"):
            pc.addTransceiver(kind, direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        out.append(pc.localDescription.sdp)
        await pc.close()
    return out


async def _connect(server, role: str, lesson: str = LESSON) -> ClassroomClient:
    client = ClassroomClient(server.base_url, server.token(role, lesson, sub=f"fuzz-{role}"))
    await client.connect()
    return client


async def _barrier(client: ClassroomClient, timeout: float) -> None:
    """Every frame sent before was handled: the pong of a ping sent now. (Not
    ``client.request``: a fuzzed ping's error carries ``ref: ping`` too.)"""
    mark = len(client.messages)
    await client.send({"type": "ping", "ts": "barrier"})
    await client.next_message("pong", since=mark, timeout=timeout,
                              where=lambda m: m.get("ts") == "barrier")


async def _live_lesson(server, batch: int) -> tuple[str, ClassroomClient]:
    """A fresh live lesson for each batch of frames: a fuzzed end-lesson ends only its own,
    so offers and candidates keep reaching the media checks of a live lesson."""
    lesson = f"{LESSON}-{batch}"
    starter = ClassroomClient(server.base_url,
                              server.token("teacher", lesson, sub="fuzz-starter"))
    await starter.connect()
    await starter.start_lesson()
    return lesson, starter


async def test_fuzzed_frames_and_bodies_never_reach_internal(caplog):
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED)
    server = await start_server(messages_per_second=100_000, message_burst=100_000,
                                max_rate_violations=10**9, hello_timeout=30.0)
    offers = await _offers()
    schemas = server.node.schemas
    codes: dict[str, int] = {}
    clients: list[ClassroomClient] = []
    try:
        batch = 0
        for role in ROLES:
            sent = 0
            while sent < FRAMES_PER_ROLE:
                batch += 1
                lesson, starter = await _live_lesson(server, batch)
                clients.append(starter)
                token = server.token(role, lesson, sub=f"fuzz-{role}")
                client = await _connect(server, role, lesson)
                for _ in range(BATCH):
                    if client.closed:  # an identity error or too_large closes it: reconnect
                        clients.append(client)
                        client = await _connect(server, role, lesson)
                    await client.send_raw(_frame(rng, schemas, offers, token))
                    sent += 1
                if not client.closed:
                    try:
                        await _barrier(client, timeout=20)
                    except ConnectionError:
                        pass
                clients.append(client)
        # offers and candidates of the roles that negotiate media, on a live lesson: the
        # random frames above reach them only now and then
        for role, purposes in (("teacher", ("publish", "grid")),
                               ("classroom", ("subscribe", "uplink"))):
            batch += 1
            lesson, starter = await _live_lesson(server, batch)
            clients.append(starter)
            client = await _connect(server, role, lesson)
            for _ in range(MEDIA_FRAMES_PER_ROLE):
                if client.closed:
                    clients.append(client)
                    client = await _connect(server, role, lesson)
                purpose = rng.choice(purposes)
                if rng.random() < 0.7:
                    frame = {"type": "offer", "purpose": purpose,
                             "sdp": _plausible(rng, "sdp", None, offers)}
                else:
                    frame = {"type": "ice", "purpose": purpose, "sdpMid": "0",
                             "sdpMLineIndex": 0,
                             "candidate": _plausible(rng, "candidate", None, offers)}
                await client.send_raw(_raw(frame))
            await _barrier(client, timeout=30)
            clients.append(client)
        # before hello: every type on a fresh socket
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                ws = await session.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws",
                                              max_msg_size=0)
                await ws.send_str(_frame(rng, schemas, offers, server.token("teacher", LESSON)))
                await ws.send_str('{"type":"ping"}')
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    data = json.loads(msg.data)
                    if data["type"] == "error":
                        codes[data["code"]] = codes.get(data["code"], 0) + 1
                    if data["type"] in ("welcome", "error"):
                        break
                await ws.close()
            await _fuzz_bodies(server, session, rng, codes)
        for client in clients:
            for err in client.errors:
                codes[err["code"]] = codes.get(err["code"], 0) + 1
    finally:
        for client in clients:
            await client.close()
        await server.close()
    print("fuzz error codes:", sorted(codes.items()))
    assert "internal" not in codes, codes
    assert sum(codes.values()) > 1000, codes  # the fuzzing did reach the checks
    assert codes.get("bad_sdp", 0) >= 50, codes  # offers reached the offer checks
    # the store is up: a flood of offers fills the media lane and is rate_limited, not
    # blamed on the store
    assert "store_unavailable" not in codes, codes
    tracebacks = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                  if r.levelno >= logging.ERROR and r.exc_info]
    assert not tracebacks, tracebacks[:5]


ROUTES = [("POST", "/api/lessons"), ("POST", "/api/tokens"),
          ("POST", f"/api/lessons/{LESSON}/caps"), ("PUT", f"/api/lessons/{LESSON}/quiz/set"),
          ("POST", f"/api/lessons/{LESSON}/quiz/set"), ("PATCH", "/api/recordings/r1"),
          ("POST", "/api/recordings/r1/link")]


def _body(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.15:
        return rng.choice(["", "{", "[]", "null", "\xff", "{}" * 3, '{"a":1}x'])
    keys = ["id", "title", "teacher", "school", "role", "lesson", "name", "ttl", "kbps",
            "questions", "format", "version", "published", "summary"]
    body = {rng.choice(keys): rng.choice(_ODD) for _ in range(rng.randint(0, 5))}
    if rng.random() < 0.3:
        body["questions"] = [_plausible(rng, "question", None, []) for _ in range(3)]
    return _raw(body)


async def _fuzz_bodies(server, session: aiohttp.ClientSession, rng: random.Random,
                       codes: dict[str, int]) -> None:
    for role in ("admin", "teacher"):
        headers = {"Authorization": f"Bearer {server.token(role, LESSON)}",
                   "Content-Type": "application/json"}
        for method, path in ROUTES:
            for _ in range(BODIES_PER_ROUTE):
                data = _body(rng).encode("utf-8", "surrogatepass")
                async with session.request(method, server.base_url + path, data=data,
                                           headers=headers) as resp:
                    assert resp.status != 500, (method, path, data[:80])
                    if resp.status >= 400 and re.match(r"application/json", resp.content_type):
                        code = (await resp.json())["error"]["code"]
                        codes[code] = codes.get(code, 0) + 1
