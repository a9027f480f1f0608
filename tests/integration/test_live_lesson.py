"""A live lesson end to end with real aiortc peers through the real server (both backends)."""

import time

import pytest

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from tests.helpers import start_server


@pytest.fixture
async def server(backend):
    srv = await start_server(redis_url=backend, presence_ttl=3.0, roster_poll=0.5)
    yield srv
    await srv.close()


async def teacher_publishing(server, lesson="math-1"):
    teacher = ClassroomClient(server.base_url, server.token("teacher", lesson, name="T"))
    await teacher.connect()
    await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())
    return teacher


async def classroom(server, name, lesson="math-1"):
    room = ClassroomClient(server.base_url, server.token("classroom", lesson, name=name))
    await room.connect()
    await room.subscribe()
    return room


async def test_teacher_to_two_classrooms_and_late_joiner(server):
    teacher = await teacher_publishing(server)
    await teacher.start_lesson()
    rooms = [await classroom(server, f"room-{i}") for i in range(2)]
    for room in rooms:
        await room.wait_for(lambda r=room: r.video_frames >= 30 and r.audio_frames >= 50,
                            timeout=20)
    # the teacher's roster shows each classroom's media connection state
    await teacher.wait_for(
        lambda: sum(p["media_state"] == "connected" for p in teacher.roster
                    if p["role"] == "classroom") == 2, timeout=10)
    # a classroom joining late gets video within 2 s of its connection
    t0 = time.monotonic()
    late = await classroom(server, "late")
    await late.wait_for(lambda: late.video_frames > 0, timeout=10)
    assert late.first_video_at - t0 < 2.0, f"late joiner waited {late.first_video_at - t0:.2f}s"
    # audio did not break for the first classrooms while the late one joined
    assert max(r.max_audio_gap for r in rooms) < 0.5
    for c in [late, *rooms, teacher]:
        await c.close()


async def test_teacher_reconnect_keeps_classrooms_going(server):
    teacher = await teacher_publishing(server)
    await teacher.start_lesson()
    room = await classroom(server, "A")
    await room.wait_for(lambda: room.video_frames >= 20, timeout=20)
    await teacher.close()  # the teacher's browser crashes
    teacher = await teacher_publishing(server)  # and comes back
    assert teacher.welcome["lesson_state"] == "live"
    before = room.video_frames
    await room.wait_for(lambda: room.video_frames >= before + 30, timeout=15)
    assert room.connection_state("subscribe") == "connected"
    await room.close()
    await teacher.close()


async def test_classroom_reconnect_gets_video_quickly(server):
    teacher = await teacher_publishing(server)
    await teacher.start_lesson()  # classrooms get media only while live (docs/media.md)
    room = await classroom(server, "A")
    await room.wait_for(lambda: room.video_frames >= 10, timeout=20)
    await room.close()
    t0 = time.monotonic()
    room = await classroom(server, "A")
    await room.wait_for(lambda: room.video_frames > 0, timeout=10)
    assert room.first_video_at - t0 < 2.0
    await room.close()
    await teacher.close()


async def test_end_lesson_releases_media(server):
    teacher = await teacher_publishing(server)
    await teacher.start_lesson()
    rooms = [await classroom(server, f"r{i}") for i in range(2)]
    for room in rooms:
        await room.wait_for(lambda r=room: r.video_frames >= 5, timeout=20)
    await teacher.end_lesson()
    relay = server.node.relay
    await rooms[0].wait_for(lambda: relay.stats()["lessons"] == {}, timeout=10)
    stats = relay.stats()
    assert stats["publishers"] == 0 and stats["subscribers"] == 0
    for room in rooms:
        await room.wait_for(lambda r=room: r.connection_state("subscribe") in
                            ("closed", "failed", "disconnected") or r.lesson_state == "ended",
                            timeout=10)
    for c in [*rooms, teacher]:
        await c.close()


async def test_low_bandwidth_button_cap_endpoint_and_tier_events(server):
    import aiohttp

    teacher = await teacher_publishing(server, lesson="abr-1")
    await teacher.start_lesson()
    thin = ClassroomClient(server.base_url, server.token("classroom", "abr-1", name="thin",
                                                         school="village"))
    await thin.connect()
    await thin.subscribe()
    wide = await classroom(server, "wide", lesson="abr-1")
    for room in (thin, wide):
        try:
            await room.wait_for(lambda r=room: r.video_frames >= 15, timeout=20)
        except TimeoutError:
            raise AssertionError(server.node.relay.stats()) from None
    # the classroom's low-bandwidth button: a tier event to it and to the teacher
    mark_t, mark_w = len(teacher.messages), len(wide.messages)
    await thin.send({"type": "low-bandwidth", "on": True})
    try:
        event = await thin.next_message("tier", timeout=5)
    except TimeoutError:
        raise AssertionError(thin.messages[-5:]) from None
    assert event["tier"] == "low" and event["direction"] == "down"
    assert event["reason"] == "manual" and event["peer_id"] == thin.peer_id
    assert "rtt_ms" in event and "loss" in event
    seen = await teacher.next_message("tier", since=mark_t, timeout=5)
    assert seen["peer_id"] == thin.peer_id and seen["tier"] == "low"
    await teacher.wait_for(lambda: any(p["peer_id"] == thin.peer_id and p["tier"] == "low"
                                       for p in teacher.roster), timeout=10)
    relay = server.node.relay
    assert relay.tier_of(f"{wide.peer_id}/subscribe") == "high"
    assert not any(m.get("type") == "tier" for m in wide.messages[mark_w:])
    # a school cap through the API (teacher's token): 100 kbit/s -> audio only
    headers = {"Authorization": "Bearer " + server.token("teacher", "abr-1")}
    async with aiohttp.ClientSession() as http:
        r = await http.post(server.base_url + "/api/lessons/abr-1/caps",
                            json={"school": "village", "kbps": 100}, headers=headers)
        assert r.status == 200, await r.text()
        r = await http.post(server.base_url + "/api/lessons/abr-1/caps",
                            json={"school": "", "kbps": 100}, headers=headers)
        assert r.status == 400
        r = await http.post(server.base_url + "/api/lessons/abr-1/caps",
                            json={"school": "village", "kbps": 100},
                            headers={"Authorization": "Bearer " + server.token("classroom",
                                                                               "abr-1")})
        assert r.status == 403
    assert relay.tier_of(f"{thin.peer_id}/subscribe") == "audio"
    audio = thin.audio_frames
    await thin.wait_for(lambda: thin.audio_frames >= audio + 50, timeout=5)
    for c in (thin, wide, teacher):
        await c.close()


async def test_cap_claim_in_a_classroom_token(server):
    teacher = await teacher_publishing(server, lesson="abr-2")
    await teacher.start_lesson()
    room = ClassroomClient(server.base_url, server.token("classroom", "abr-2", school="hamlet",
                                                         cap_kbps=250))
    await room.connect()
    await room.subscribe()
    await room.wait_for(lambda: room.video_frames >= 10, timeout=20)
    assert server.node.relay.tier_of(f"{room.peer_id}/subscribe") == "low"
    for c in (room, teacher):
        await c.close()
