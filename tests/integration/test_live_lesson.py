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
