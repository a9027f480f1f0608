"""The signaling protocol through the real server, on both store backends."""

import asyncio
import json

import aiohttp
import pytest

from classroom_client import ClassroomClient, ProtocolError
from signaling.auth import mint_token
from tests.helpers import start_server


@pytest.fixture
async def server(backend):
    srv = await start_server(redis_url=backend, presence_ttl=2.0, roster_poll=0.5,
                             hello_timeout=1.0)
    yield srv
    await srv.close()


async def connect(server, role, lesson="math-1", **kw):
    client = ClassroomClient(server.base_url, server.token(role, lesson, **kw))
    await client.connect()
    return client


async def test_hello_welcome_and_roster(server):
    teacher = await connect(server, "teacher", name="王老师")
    assert teacher.welcome["role"] == "teacher"
    assert teacher.welcome["lesson_state"] == "waiting"
    assert teacher.welcome["ice_servers"] == []
    room = await connect(server, "classroom", name="一班", school="山村小学")
    await teacher.wait_for(lambda: {p["name"] for p in teacher.roster} == {"王老师", "一班"})
    entry = next(p for p in teacher.roster if p["name"] == "一班")
    assert entry["school"] == "山村小学" and entry["role"] == "classroom"
    await room.close()
    await teacher.wait_for(lambda: [p["name"] for p in teacher.roster] == ["王老师"])
    await teacher.close()


async def test_lesson_start_and_end_reach_every_classroom(server):
    teacher = await connect(server, "teacher")
    rooms = [await connect(server, "classroom") for _ in range(2)]
    reply = await teacher.start_lesson()
    assert reply["lesson_state"] == "live"
    for room in rooms:
        await room.next_message("lesson", where=lambda m: m["lesson_state"] == "live", since=0)
    late = await connect(server, "classroom")
    assert late.welcome["lesson_state"] == "live"
    await teacher.end_lesson()
    for room in rooms + [late]:
        await room.wait_for(lambda r=room: r.lesson_state == "ended")
    for c in [teacher, late, *rooms]:
        await c.close()


@pytest.mark.parametrize("token_kind,code", [
    ("forged", "invalid_token"), ("expired", "token_expired"), ("wrong_lesson", "wrong_lesson"),
])
async def test_bad_tokens_get_error_and_close(server, token_kind, code):
    token = {
        "forged": mint_token("some-other-secret-0123456789abcdef-01", role="teacher",
                             lesson="math-1"),
        "expired": mint_token(server.secret, role="teacher", lesson="math-1", ttl=1, now=0),
        "wrong_lesson": server.token("teacher", "other-lesson"),
    }[token_kind]
    client = ClassroomClient(server.base_url, token, lesson="math-1")
    with pytest.raises(ProtocolError) as err:
        await client.connect()
    assert err.value.code == code
    await client.wait_for(lambda: client.closed, timeout=5)
    await client.close()


async def test_wrong_role_malformed_unknown_keep_socket_usable(server):
    room = await connect(server, "classroom")
    with pytest.raises(ProtocolError) as err:
        await room.start_lesson()
    assert err.value.code == "forbidden"
    with pytest.raises(ProtocolError) as err:
        await room.request({"type": "offer", "purpose": "publish", "sdp": "v=0"}, "answer")
    assert err.value.code == "forbidden"
    for raw, code in [("{oops", "bad_json"), ('{"type": "warp"}', "unknown_type"),
                      ('{"type": "offer", "purpose": "subscribe"}', "bad_message"),
                      ('{"type": "hello", "token": "x"}', "already_authenticated")]:
        mark = len(room.messages)
        await room.send_raw(raw)
        reply = await room.next_message("error", since=mark)
        assert reply["code"] == code
    pong = await room.request({"type": "ping", "ts": 7}, "pong")
    assert pong["ts"] == 7
    await room.close()


async def test_sdp_that_is_not_sdp_is_refused(server):
    teacher = await connect(server, "teacher")
    for sdp in ["hello world", "v=0\r\n" + "a=x\r\n" * 10, ""]:
        with pytest.raises(ProtocolError) as err:
            await teacher.request({"type": "offer", "purpose": "publish", "sdp": sdp}, "answer")
        assert err.value.code == "bad_sdp"
    assert (await teacher.request({"type": "ping"}, "pong"))["type"] == "pong"
    await teacher.close()


async def test_message_before_hello_and_hello_timeout(server):
    async with aiohttp.ClientSession() as http, http.ws_connect(server.base_url + "/ws") as ws:
        await ws.send_str('{"type": "start-lesson"}')
        reply = json.loads((await ws.receive(timeout=5)).data)
        assert reply["code"] == "not_authenticated"
        msg = await ws.receive(timeout=5)  # hello_timeout=1s closes the socket
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008


async def test_oversize_frame_is_refused_and_server_lives(server):
    async with aiohttp.ClientSession() as http, http.ws_connect(server.base_url + "/ws") as ws:
        await ws.send_str(json.dumps({"type": "hello", "token": "x" * 200_000}))
        msg = await ws.receive(timeout=5)  # told first (issue 18), then closed
        assert json.loads(msg.data)["code"] == "too_large"
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009
    client = await connect(server, "classroom")  # the server is still fine
    await client.close()


async def test_flood_is_rate_limited_then_closed(server):
    room = await connect(server, "classroom")
    for _ in range(300):
        await room.send({"type": "ping"})
    await room.wait_for(lambda: any(e["code"] == "rate_limited" for e in room.errors))
    await room.wait_for(lambda: room.closed, timeout=10)
    assert room._ws.close_code == 1008
    other = await connect(server, "classroom")
    assert (await other.request({"type": "ping"}, "pong"))["type"] == "pong"
    await other.close()
    await room.close()


async def test_peer_that_vanishes_leaves_the_roster(server):
    teacher = await connect(server, "teacher")
    room = await connect(server, "classroom", name="ghost")
    await teacher.wait_for(lambda: any(p["name"] == "ghost" for p in teacher.roster))
    room._ws._response.connection.transport.abort()  # no close frame, like a pulled cable
    await teacher.wait_for(lambda: all(p["name"] != "ghost" for p in teacher.roster),
                           timeout=10)
    await teacher.close()
    await room.close()


async def test_hand_raise_is_broadcast(server):
    teacher = await connect(server, "teacher")
    room = await connect(server, "classroom")
    await room.send({"type": "raise-hand"})
    hand = await teacher.next_message("hand", since=0)
    assert hand == {"type": "hand", "peer_id": room.peer_id, "raised": True}
    await teacher.wait_for(lambda: any(p["hand"] for p in teacher.roster))
    await room.send({"type": "lower-hand"})
    await teacher.wait_for(lambda: not any(p["hand"] for p in teacher.roster))
    await teacher.close()
    await room.close()


async def test_http_endpoints(server):
    admin = server.token("admin", "*")
    room_token = server.token("classroom", "math-1")
    async with aiohttp.ClientSession() as http:
        assert (await http.get(server.base_url + "/healthz")).status == 200
        ready = await http.get(server.base_url + "/readyz")
        assert ready.status == 200 and (await ready.json())["ok"] is True
        hdr = {"Authorization": f"Bearer {admin}"}
        r = await http.post(server.base_url + "/api/lessons", json={"id": "sci-2", "title": "科学"},
                            headers=hdr)
        assert r.status == 201
        r = await http.post(server.base_url + "/api/lessons", json={"id": "sci-2"}, headers=hdr)
        assert r.status == 409 and (await r.json())["error"]["code"] == "lesson_exists"
        r = await http.post(server.base_url + "/api/lessons", data="{bad", headers=hdr)
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_json"
        r = await http.post(server.base_url + "/api/lessons", json={"id": "../x"}, headers=hdr)
        assert r.status == 400
        r = await http.get(server.base_url + "/api/lessons/sci-2",
                           headers={"Authorization": f"Bearer {room_token}"})
        assert r.status == 403 and (await r.json())["error"]["code"] == "wrong_lesson"
        r = await http.get(server.base_url + "/api/lessons")
        assert r.status == 401
        r = await http.post(server.base_url + "/api/tokens", headers=hdr,
                            json={"role": "classroom", "lesson": "sci-2", "ttl": 60})
        token = (await r.json())["token"]
        r = await http.get(server.base_url + "/api/lessons/sci-2",
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200 and (await r.json())["title"] == "科学"
        r = await http.post(server.base_url + "/api/tokens",
                            headers={"Authorization": f"Bearer {room_token}"},
                            json={"role": "admin", "lesson": "*"})
        assert r.status == 403
        r = await http.get(server.base_url + "/api/nope", headers=hdr)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        metrics = await (await http.get(server.base_url + "/metrics")).text()
        for name in ("classroom_ws_connections", "classroom_lessons_active",
                     "classroom_signaling_errors_total", "classroom_signaling_messages_total"):
            assert name in metrics


async def test_many_clients_do_not_block_each_other(server):
    rooms = await asyncio.gather(*(connect(server, "classroom") for _ in range(20)))
    teacher = await connect(server, "teacher")
    await teacher.wait_for(lambda: len(teacher.roster) == 21)
    for r in rooms:
        await r.close()
    await teacher.close()
