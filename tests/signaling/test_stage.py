"""The two-way lesson's signaling (docs/two-way.md) through the real server, both backends:
hand queue, stage, welcome after a reconnect, mute/remove, share, every refusal."""

from __future__ import annotations

import aiohttp
import pytest

from classroom_client import ClassroomClient
from tests.helpers import eventually, start_server

# A recvonly audio offer is enough for the relay to refuse or for the role check to
# refuse before the relay; the role checks never look at the SDP.
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture
async def server(backend):
    # the refusal test sends ~100 messages from one socket: lift the rate limit
    srv = await start_server(redis_url=backend, presence_ttl=2.0, roster_poll=0.3,
                             messages_per_second=500.0, message_burst=500.0)
    yield srv
    await srv.close()


async def connect(server, role, lesson="math-1", **kw) -> ClassroomClient:
    client = ClassroomClient(server.base_url, server.token(role, lesson, **kw))
    await client.connect()
    return client


async def refused(client: ClassroomClient, message: dict, code: str) -> None:
    """``message`` gets an error with ``code``; the socket stays usable."""
    mark = len(client.messages)
    await client.send(message)
    # (a malformed message's error carries no ``ref``: it had no valid type yet)
    err = await client.next_message("error", since=mark)
    assert err["code"] == code, err
    pong = await client.request({"type": "ping", "ts": 1}, "pong")
    assert pong["ts"] == 1


async def close_all(*clients: ClassroomClient) -> None:
    for c in clients:
        await c.close()


async def test_hand_queue_oldest_first_and_survives_reconnects(server):
    teacher = await connect(server, "teacher")
    tokens = {n: server.token("classroom", name=n, school="村小") for n in "abc"}
    rooms = {}
    for n in "bac":
        rooms[n] = ClassroomClient(server.base_url, tokens[n])
        await rooms[n].connect()
        await rooms[n].send({"type": "raise-hand"})
        await teacher.next_message("hand", since=0,
                                   where=lambda m, n=n: m["peer_id"] == rooms[n].peer_id)
    # raising again keeps the place in the queue
    await rooms["b"].send({"type": "raise-hand"})
    await teacher.close()
    teacher = await connect(server, "teacher")
    assert [h["name"] for h in teacher.welcome["hands"]] == ["b", "a", "c"]
    assert [h["peer_id"] for h in teacher.welcome["hands"]] == [
        rooms[n].peer_id for n in "bac"]
    assert teacher.welcome["stage"] is None and teacher.welcome["share"] is False
    await rooms["a"].send({"type": "lower-hand"})
    await teacher.next_message("hand", since=0, where=lambda m: m["raised"] is False)
    # classroom b's TV reconnects: same token, new peer id, same place (first)
    old_b = rooms["b"].peer_id
    await rooms["b"].close()
    await teacher.next_message("hand", since=0,
                               where=lambda m: m["peer_id"] == old_b and not m["raised"])
    rooms["b"] = ClassroomClient(server.base_url, tokens["b"])
    await rooms["b"].connect()
    await teacher.next_message("hand", since=0, where=lambda m: (
        m["peer_id"] == rooms["b"].peer_id and m["raised"]))
    await teacher.wait_for(lambda: any(p["hand"] and p["peer_id"] == rooms["b"].peer_id
                                       for p in teacher.roster))
    late = await connect(server, "teacher")
    assert [h["name"] for h in late.welcome["hands"]] == ["b", "c"]
    await close_all(teacher, late, *rooms.values())


async def test_call_on_stage_and_leave_reach_everyone(server):
    teacher = await connect(server, "teacher")
    a = await connect(server, "classroom", name="一班", school="山村小学")
    b = await connect(server, "classroom", name="二班")
    student = await connect(server, "student")
    await a.send({"type": "raise-hand"})
    await teacher.next_message("hand", since=0, where=lambda m: m["raised"])
    mark = {c: len(c.messages) for c in (teacher, a, b, student)}
    await teacher.send({"type": "call-on-stage", "peer_id": a.peer_id})
    for c in (teacher, a, b, student):
        ev = await c.next_message("stage", since=mark[c])
        assert ev["peer_id"] == a.peer_id and ev["name"] == "一班"
        assert ev["school"] == "山村小学" and ev["uplink"] is False  # no uplink: allowed
    # its hand is lowered (queue and roster)
    await teacher.next_message("hand", since=mark[teacher], where=lambda m: (
        m["peer_id"] == a.peer_id and m["raised"] is False))
    await teacher.wait_for(lambda: not any(p["hand"] for p in teacher.roster))
    late = await connect(server, "classroom")
    assert late.welcome["stage"]["peer_id"] == a.peer_id and late.welcome["hands"] == []
    # calling another classroom replaces it; the classroom on stage may leave by itself
    await teacher.send({"type": "call-on-stage", "peer_id": b.peer_id})
    await a.next_message("stage", since=0, where=lambda m: m["peer_id"] == b.peer_id)
    mark_a = len(a.messages)
    await b.send({"type": "leave-stage"})
    ev = await a.next_message("stage", since=mark_a)
    assert ev["peer_id"] is None and ev["reason"] == "left"
    # teacher's leave-stage
    mark_b = len(b.messages)
    await teacher.send({"type": "call-on-stage", "peer_id": a.peer_id})
    await b.next_message("stage", since=mark_b, where=lambda m: m["peer_id"] == a.peer_id)
    mark_b = len(b.messages)
    await teacher.send({"type": "leave-stage"})
    ev = await b.next_message("stage", since=mark_b)
    assert ev["peer_id"] is None and ev["reason"] == "teacher"
    # leave-stage with nobody on stage: only the sender hears the (empty) stage
    reply = await teacher.request({"type": "leave-stage"}, "stage")
    assert reply["peer_id"] is None
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(server.base_url + "/metrics")).text()
    assert 'classroom_stage_calls_total{uplink="no"}' in text
    assert "classroom_hands_raised_total" in text
    await close_all(teacher, a, b, student, late)


async def test_stage_cleared_when_its_classroom_disconnects(server):
    teacher = await connect(server, "teacher")
    a = await connect(server, "classroom")
    await teacher.send({"type": "call-on-stage", "peer_id": a.peer_id})
    await teacher.next_message("stage", since=0, where=lambda m: m["peer_id"] == a.peer_id)
    mark = len(teacher.messages)
    a._ws._response.connection.transport.abort()  # no close frame, like a pulled cable
    ev = await teacher.next_message("stage", since=mark, timeout=20)
    assert ev["peer_id"] is None and ev["reason"] == "left"
    again = await connect(server, "teacher")
    assert again.welcome["stage"] is None
    await close_all(teacher, a, again)


async def test_share_and_welcome_after_reconnect(server):
    teacher = await connect(server, "teacher")
    a = await connect(server, "classroom", name="一班")
    await teacher.send({"type": "share", "on": True})
    assert (await a.next_message("share", since=0))["on"] is True
    relay = server.node.relay  # the event reached this node's relay (remembered per lesson)
    await a.wait_for(lambda: relay.share_state("math-1") is True, 5)
    await teacher.send({"type": "call-on-stage", "peer_id": a.peer_id})
    await a.next_message("stage", since=0)
    await teacher.close()
    teacher = await connect(server, "teacher")
    w = teacher.welcome
    assert w["share"] is True and w["stage"]["peer_id"] == a.peer_id
    assert w["stage"]["name"] == "一班" and w["uplinks"] == []
    await teacher.send({"type": "share", "on": False})
    assert (await a.next_message("share", since=0, where=lambda m: not m["on"]))["on"] is False
    await a.wait_for(lambda: relay.share_state("math-1") is False, 5)
    await close_all(teacher, a)


async def test_mute_and_uplink_state_tiles(server):
    teacher = await connect(server, "teacher")
    token_a = server.token("classroom", name="一班")
    a = ClassroomClient(server.base_url, token_a)
    await a.connect()
    await a.send({"type": "uplink-state", "audio": False, "video": True})
    tile = await teacher.next_message("uplink", since=0)
    assert tile == {"type": "uplink", "peer_id": a.peer_id, "state": "none", "audio": False,
                    "video": True, "muted": False}
    await teacher.send({"type": "mute-classroom", "peer_id": a.peer_id, "on": True})
    assert (await a.next_message("muted", since=0)) == {"type": "muted", "on": True}
    tile = await teacher.next_message("uplink", since=0, where=lambda m: m["muted"])
    assert tile["peer_id"] == a.peer_id
    again = await connect(server, "teacher")
    assert [(u["peer_id"], u["muted"]) for u in again.welcome["uplinks"]] == [
        (a.peer_id, True)]
    # the classroom reloads: still muted (told right after its welcome)
    await a.close()
    a = ClassroomClient(server.base_url, token_a)
    await a.connect()
    assert (await a.next_message("muted", since=0)) == {"type": "muted", "on": True}
    assert a.messages[0]["type"] == "welcome"
    await teacher.next_message("uplink", since=0, where=lambda m: (
        m["peer_id"] == a.peer_id and m["muted"]))
    await teacher.send({"type": "mute-classroom", "peer_id": a.peer_id, "on": False})
    assert (await a.next_message("muted", since=0, where=lambda m: not m["on"]))["on"] is False
    b = ClassroomClient(server.base_url, token_a)
    await b.connect()
    await b.request({"type": "ping"}, "pong")  # anything held for b was sent before this
    assert not any(m["type"] == "muted" for m in b.messages)
    await close_all(teacher, a, b, again)


async def test_remove_classroom_closes_its_socket(server):
    teacher = await connect(server, "teacher")
    a = await connect(server, "classroom", name="gone")
    b = await connect(server, "classroom", name="stays")
    await a.send({"type": "raise-hand"})
    await teacher.next_message("hand", since=0)
    await teacher.send({"type": "remove-classroom", "peer_id": a.peer_id})
    assert await a.next_message("removed", since=0) == {"type": "removed"}
    await a.wait_for(lambda: a.closed, timeout=10)
    assert a._ws.close_code == 4001
    await teacher.wait_for(lambda: [p["name"] for p in teacher.roster
                                    if p["role"] == "classroom"] == ["stays"])
    assert not any(m["type"] == "removed" for m in b.messages + teacher.messages)
    late = await connect(server, "teacher")
    assert late.welcome["hands"] == []
    await refused(teacher, {"type": "remove-classroom", "peer_id": a.peer_id}, "not_found")
    await close_all(teacher, a, b, late)


async def test_every_refusal_has_its_code_and_the_server_stays_up(server):
    teacher = await connect(server, "teacher")
    a = await connect(server, "classroom")
    b = await connect(server, "classroom")
    student = await connect(server, "student")
    elsewhere = await connect(server, "classroom", lesson="other-lesson")
    other_teacher = await connect(server, "teacher", lesson="other-lesson")
    # a classroom may not call itself (or anyone) on stage, mute or remove another
    await refused(a, {"type": "call-on-stage", "peer_id": a.peer_id}, "forbidden")
    await refused(a, {"type": "mute-classroom", "peer_id": b.peer_id, "on": True}, "forbidden")
    await refused(a, {"type": "remove-classroom", "peer_id": b.peer_id}, "forbidden")
    await refused(a, {"type": "grid-view", "peers": []}, "forbidden")
    await refused(a, {"type": "share", "on": True}, "forbidden")
    # only the classroom on stage may leave it
    await teacher.send({"type": "call-on-stage", "peer_id": b.peer_id})
    await a.next_message("stage", since=0)
    await refused(a, {"type": "leave-stage"}, "forbidden")
    # media: a student offers nothing; each purpose only for its role
    for purpose in ("publish", "subscribe", "uplink", "grid"):
        await refused(student, {"type": "offer", "purpose": purpose, "sdp": SDP}, "forbidden")
    await refused(a, {"type": "offer", "purpose": "grid", "sdp": SDP}, "forbidden")
    await refused(a, {"type": "offer", "purpose": "publish", "sdp": SDP}, "forbidden")
    await refused(teacher, {"type": "offer", "purpose": "uplink", "sdp": SDP}, "forbidden")
    await refused(student, {"type": "raise-hand"}, "forbidden")
    await refused(teacher, {"type": "uplink-state", "audio": True, "video": True},
                  "forbidden")
    # unknown peers, other lessons' peers, non-classrooms
    for peer in ("classroom-nobody", elsewhere.peer_id, teacher.peer_id, student.peer_id):
        await refused(teacher, {"type": "call-on-stage", "peer_id": peer}, "not_found")
        await refused(teacher, {"type": "mute-classroom", "peer_id": peer, "on": True},
                      "not_found")
        await refused(teacher, {"type": "remove-classroom", "peer_id": peer}, "not_found")
    await refused(other_teacher, {"type": "call-on-stage", "peer_id": a.peer_id}, "not_found")
    # malformed
    await refused(teacher, {"type": "call-on-stage"}, "bad_message")
    await refused(teacher, {"type": "call-on-stage", "peer_id": 7}, "bad_message")
    await refused(teacher, {"type": "mute-classroom", "peer_id": a.peer_id}, "bad_message")
    await refused(teacher, {"type": "grid-view", "peers": "all"}, "bad_message")
    await refused(teacher, {"type": "grid-view", "peers": [1, 2]}, "bad_message")
    await refused(teacher, {"type": "grid-view", "peers": ["x"] * 300}, "bad_message")
    await refused(teacher, {"type": "share", "on": "yes"}, "bad_message")
    await refused(a, {"type": "uplink-state", "audio": 1, "video": True}, "bad_message")
    await refused(teacher, {"type": "offer", "purpose": "stage", "sdp": SDP}, "bad_message")
    # a grid-view before any grid connection is fine: an empty grid
    assert (await teacher.request({"type": "grid-view", "peers": [a.peer_id]},
                                  "grid"))["slots"] == []
    # nothing above changed the stage; the server still serves a new hello
    fresh = await connect(server, "teacher")
    assert fresh.welcome["stage"]["peer_id"] == b.peer_id
    await close_all(teacher, a, b, student, elsewhere, other_teacher, fresh)


async def test_two_nodes_share_queue_stage_mute_and_remove(redis_url):
    """Teacher on one node, classrooms on another, one Redis."""
    one = await start_server(redis_url=redis_url, presence_ttl=2.0, roster_poll=0.3)
    two = await start_server(redis_url=redis_url, presence_ttl=2.0, roster_poll=0.3)
    try:
        teacher = await connect(one, "teacher")
        a = await connect(two, "classroom", name="一班")
        b = await connect(two, "classroom", name="二班")
        await b.send({"type": "raise-hand"})
        await a.send({"type": "raise-hand"})
        await teacher.next_message("hand", since=0, where=lambda m: m["peer_id"] == a.peer_id)
        await teacher.send({"type": "call-on-stage", "peer_id": a.peer_id})
        ev = await b.next_message("stage", since=0)
        assert ev["peer_id"] == a.peer_id and ev["name"] == "一班"
        # its hand went down on the node that holds it (roster), the queue keeps b
        await teacher.wait_for(lambda: [p["name"] for p in teacher.roster if p["hand"]]
                               == ["二班"])
        await teacher.send({"type": "mute-classroom", "peer_id": b.peer_id, "on": True})
        assert (await b.next_message("muted", since=0))["on"] is True
        await teacher.send({"type": "remove-classroom", "peer_id": a.peer_id})
        await a.next_message("removed", since=0)
        await a.wait_for(lambda: a.closed, timeout=10)
        ev = await teacher.next_message("stage", since=0, where=lambda m: m["peer_id"] is None)
        assert ev["reason"] == "left"
        again = await connect(one, "teacher")
        assert again.welcome["stage"] is None
        assert [h["name"] for h in again.welcome["hands"]] == ["二班"]
        await close_all(teacher, a, b, again)
    finally:
        await one.close()
        await two.close()


async def test_ended_lesson_has_no_stage(server):
    teacher = await connect(server, "teacher")
    a = await connect(server, "classroom")
    await teacher.start_lesson()
    await teacher.send({"type": "call-on-stage", "peer_id": a.peer_id})
    await a.next_message("stage", since=0)
    await teacher.send({"type": "share", "on": True})
    await a.next_message("share", since=0)
    await teacher.end_lesson()
    await refused(teacher, {"type": "call-on-stage", "peer_id": a.peer_id}, "lesson_ended")
    # the ended lesson's stage, hands and share are forgotten (every node's listener)
    async def forgotten():
        late = await connect(server, "classroom")
        await late.close()
        return late.welcome["stage"] is None and late.welcome["share"] is False
    await eventually(forgotten, timeout=10)
    await close_all(teacher, a)
