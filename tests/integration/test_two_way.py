"""A two-way lesson through the real server with real aiortc peers (docs/two-way.md).

Three classrooms publish uplinks (each at its own picture size, so a decoded frame tells
whose it is: grid slots are forwarded, never re-encoded) and subscribe with the stage lines;
the teacher opens a grid. Checked: the grid carries exactly the visible classrooms; after
``call-on-stage`` the other classrooms decode the stage classroom's video and audio (the
delay from the call to the first stage frame is printed); refusals with real SDP; removal.
"""

from __future__ import annotations

import time

import pytest

from classroom_client import ClassroomClient, ProtocolError
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from classroom_client.uplink import publish_uplink, subscribe_grid, subscribe_with_stage
from tests.helpers import eventually, start_server

SIZES = {"A": (320, 240), "B": (352, 288), "C": (256, 192)}


@pytest.fixture
async def server():
    srv = await start_server(presence_ttl=5.0, roster_poll=0.5)
    yield srv
    await srv.close()


async def connect(server, role: str, **kw) -> ClassroomClient:
    client = ClassroomClient(server.base_url, server.token(role, "two-way", **kw))
    await client.connect()
    return client


async def test_grid_stage_and_removal_with_real_peers(server):
    teacher = await connect(server, "teacher", name="王老师")
    await teacher.start_lesson()
    rooms, lines, tracks = {}, {}, []
    for name, (w, h) in SIZES.items():
        room = rooms[name] = await connect(server, "classroom", name=name)
        video, audio = SyntheticVideoTrack(w, h, fps=15), SyntheticAudioTrack()
        tracks += [video, audio]
        await publish_uplink(room, video, audio)
        lines[name] = await subscribe_with_stage(room)
    peer = {n: r.peer_id for n, r in rooms.items()}
    grid = await subscribe_grid(teacher, slots=2)
    try:
        # every uplink's tile goes active (relay on_uplink -> `uplink` event)
        for name in SIZES:
            await teacher.next_message("uplink", since=0, timeout=20, where=lambda m, n=name: (
                m["peer_id"] == peer[n] and m["state"] == "active"))

        # default view (no grid-view yet): the first two uplinks, pushed once connected
        first = await teacher.next_message("grid", since=0, where=lambda m: len(m["slots"]) == 2)
        assert {s["peer_id"] for s in first["slots"]} == {peer["A"], peer["B"]}
        # the teacher sees A and C: exactly their pictures arrive, in the slots the reply names
        reply = await teacher.request({"type": "grid-view", "peers": [peer["A"], peer["C"]]},
                                      "grid")
        slot_of = {s["peer_id"]: s["slot"] for s in reply["slots"]}
        assert set(slot_of) == {peer["A"], peer["C"]}
        for name in ("A", "C"):
            counter = grid.video[slot_of[peer[name]]]
            await eventually(lambda c=counter, n=name: c.size == SIZES[n], timeout=20)
        # B is shown instead of C: C's slot now carries B (sticky: A keeps its slot)
        reply = await teacher.request({"type": "grid-view", "peers": [peer["A"], peer["B"]]},
                                      "grid")
        new_slot = {s["peer_id"]: s["slot"] for s in reply["slots"]}
        assert new_slot[peer["A"]] == slot_of[peer["A"]] and peer["C"] not in new_slot
        counter = grid.video[new_slot[peer["B"]]]
        await eventually(lambda: counter.size == SIZES["B"], timeout=20)

        # B on stage: A and C decode B's video and audio on their stage lines
        marks = {n: len(r.messages) for n, r in rooms.items()}
        called = time.monotonic()
        await teacher.send({"type": "call-on-stage", "peer_id": peer["B"]})
        for name, room in rooms.items():
            ev = await room.next_message("stage", since=marks[name])
            assert ev["peer_id"] == peer["B"] and ev["uplink"] is True
        others = [lines["A"], lines["C"]]
        await eventually(lambda: all(x.stage_video.frames >= 5 for x in others), timeout=20)
        await eventually(lambda: all(x.stage_audio.frames >= 25 for x in others), timeout=20)
        delays = {n: lines[n].stage_video.first_frame_at - called for n in ("A", "C")}
        audio_delays = {n: lines[n].stage_audio.first_frame_at - called for n in ("A", "C")}
        print(f"\ncall-on-stage -> first stage video frame: "
              f"{ {n: round(d * 1000) for n, d in delays.items()} } ms; first stage audio: "
              f"{ {n: round(d * 1000) for n, d in audio_delays.items()} } ms")
        assert max(delays.values()) < 5.0, delays  # target 1 s; a loaded 2-core box is slower
        # the teacher hears the stage classroom on the grid's audio line
        await eventually(lambda: grid.audio[0].frames >= 25, timeout=20)
        # the stage classroom does not hear itself
        assert lines["B"].stage_audio.frames == 0

        # the teacher mutes B: the relay stops its audio (reaches the relay of B's node)
        await teacher.send({"type": "mute-classroom", "peer_id": peer["B"], "on": True})
        await rooms["B"].next_message("muted", since=0)
        await eventually(lambda: any(
            s["peer_id"] == peer["B"] + "/uplink" and s["muted"]
            for s in server.node.relay.uplink_stats("two-way")), timeout=10)

        # removal: B's socket closes, its tile closes, the stage empties, its media is gone
        mark = len(teacher.messages)
        await teacher.send({"type": "remove-classroom", "peer_id": peer["B"]})
        await rooms["B"].next_message("removed", since=0)
        await eventually(lambda: rooms["B"].closed, timeout=10)
        await teacher.next_message("uplink", since=mark, where=lambda m: (
            m["peer_id"] == peer["B"] and m["state"] == "closed"))
        ev = await teacher.next_message("stage", since=mark)
        assert ev["peer_id"] is None
        await eventually(lambda: server.node.relay.stage_stats("two-way").get("peer_id")
                         is None, timeout=10)
        await eventually(lambda: peer["B"] + "/uplink" not in {
            s["peer_id"] for s in server.node.relay.uplink_stats("two-way")}, timeout=10)
        # the grid is pushed again without B
        await teacher.next_message("grid", since=mark, where=lambda m: (
            peer["B"] not in {s["peer_id"] for s in m["slots"]}))
    finally:
        await grid.stop()
        for x in lines.values():
            await x.stop()
        for t in tracks:
            t.stop()
        for c in [teacher, *rooms.values()]:
            await c.close()


async def test_uplink_refusals_with_real_sdp(server):
    teacher = await connect(server, "teacher")
    room = await connect(server, "classroom")
    tracks = [SyntheticVideoTrack(256, 192, fps=5), SyntheticVideoTrack(256, 192, fps=5),
              SyntheticAudioTrack()]
    try:
        mark = len(room.messages)
        with pytest.raises(ProtocolError) as err:
            await publish_uplink(room, tracks[0], tracks[2], extra_video=tracks[1])
        assert err.value.code == "too_many_tracks", err.value
        error = await room.next_message("error", since=mark)
        assert error["code"] == "too_many_tracks"
        # a teacher's real uplink offer and a classroom's real grid offer: forbidden
        with pytest.raises(ProtocolError) as err:
            await publish_uplink(teacher, tracks[0], None)
        assert err.value.code == "forbidden"
        with pytest.raises(ProtocolError) as err:
            await subscribe_grid(room, slots=1)
        assert err.value.code == "forbidden"
        # the socket still works and a correct uplink is then accepted
        await publish_uplink(room, tracks[0], tracks[2])
        await teacher.next_message("uplink", since=0, timeout=20, where=lambda m: (
            m["peer_id"] == room.peer_id and m["state"] == "active"))
    finally:
        for t in tracks:
            t.stop()
        await teacher.close()
        await room.close()


async def test_uplink_over_its_cap_gets_uplink_over_cap(server):
    """The relay's violation callback reaches the classroom as an ``error``; the socket
    stays up. (Cap lowered on this node's relay so aiortc's ~500 kbit/s VP8 is over it.)"""
    config = server.node.relay.config
    config.uplink_max_bitrate, config.uplink_over_seconds = 30_000, 1.0
    room = await connect(server, "classroom")
    video, audio = SyntheticVideoTrack(320, 240, fps=15), SyntheticAudioTrack()
    try:
        await publish_uplink(room, video, audio)
        error = await room.next_message("error", since=0, timeout=20)
        assert error["code"] == "uplink_over_cap" and error["ref"] == "uplink", error
        pong = await room.request({"type": "ping", "ts": 2}, "pong")
        assert pong["ts"] == 2
    finally:
        video.stop()
        audio.stop()
        await room.close()


async def test_stage_called_from_another_node(redis_url):
    """Teacher on node one, classrooms (and their media) on node two, one Redis: the
    call-on-stage event makes node two's relay put the classroom on stage."""
    one = await start_server(redis_url=redis_url, presence_ttl=5.0, roster_poll=0.5)
    two = await start_server(redis_url=redis_url, presence_ttl=5.0, roster_poll=0.5)
    video, audio = SyntheticVideoTrack(320, 240, fps=15), SyntheticAudioTrack()
    clients: list[ClassroomClient] = []
    viewer = None
    try:
        teacher = await connect(one, "teacher")
        speaker = await connect(two, "classroom", name="讲")
        listener = await connect(two, "classroom", name="听")
        clients += [teacher, speaker, listener]
        await teacher.start_lesson()  # node two hears it: its relay lets the stage out
        await publish_uplink(speaker, video, audio)
        viewer = await subscribe_with_stage(listener)
        await teacher.next_message("uplink", since=0, timeout=20, where=lambda m: (
            m["peer_id"] == speaker.peer_id and m["state"] == "active"))
        await teacher.send({"type": "call-on-stage", "peer_id": speaker.peer_id})
        await eventually(lambda: viewer.stage_video.frames >= 5
                         and viewer.stage_audio.frames >= 25, timeout=20)
        assert viewer.stage_video.size is not None
        assert one.node.relay.uplink_stats("two-way") == []  # no media on the teacher's node
    finally:
        if viewer is not None:
            await viewer.stop()
        video.stop()
        audio.stop()
        for c in clients:
            await c.close()
        await one.close()
        await two.close()
