"""Classroom uplinks across the cascade: the teacher on node A sees and calls on stage a
classroom whose socket reached node B (media_relay/cascade_uplinks.py).

B's classrooms' uplinks go up the lesson's link to A only as A's grid and stage want them;
the stage is decoded and encoded once, at A (the origin), and B pulls its lines back, so
every classroom on both nodes sees and hears it (and the stage classroom does not hear
itself). Real aiortc peers, two nodes on one real redis-server; each classroom's uplink
has its own picture size so a decoded frame tells whose it is.
"""

from __future__ import annotations

import pytest

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from classroom_client.uplink import publish_uplink, subscribe_grid, subscribe_with_stage
from tests.helpers import eventually, start_server

pytestmark = pytest.mark.redis

SIZES = {"A1": (320, 240), "B1": (640, 360), "B2": (256, 192)}
"""Uplink sizes: the grid forwards them as they are; the stage is re-encoded at the
largest tier no larger than the uplink (B1: 640 wide, A1: narrower)."""
LESSON = "two-way-cascade"


async def test_edge_classrooms_in_the_origins_grid_and_on_stage(redis_url):
    a = await start_server(redis_url=redis_url, presence_ttl=3.0, roster_poll=0.5,
                           node_id="node-a")
    b = await start_server(secret=a.secret, redis_url=redis_url, presence_ttl=3.0,
                           roster_poll=0.5, node_id="node-b")
    teacher = ClassroomClient(a.base_url, a.token("teacher", LESSON, name="T"))
    rooms = {name: ClassroomClient((a if name.startswith("A") else b).base_url,
                                   (a if name.startswith("A") else b).token(
                                       "classroom", LESSON, name=name))
             for name in SIZES}
    tracks, lines = [], {}
    grid = None
    try:
        await teacher.connect()
        await teacher.start_lesson()
        tracks += [SyntheticVideoTrack(640, 360, fps=15), SyntheticAudioTrack()]
        await teacher.publish(*tracks[-2:])
        for name, (w, h) in SIZES.items():
            room = rooms[name]
            await room.connect()
            tracks += [SyntheticVideoTrack(w, h, fps=15), SyntheticAudioTrack()]
            await publish_uplink(room, *tracks[-2:])
            lines[name] = await subscribe_with_stage(room)
        peer = {n: r.peer_id for n, r in rooms.items()}
        await eventually(lambda: all(x.video[0].frames >= 5 for x in lines.values()), 20)

        # the teacher's grid on A shows B1 (an edge classroom) and A1
        grid = await subscribe_grid(teacher, slots=2)
        mark = len(teacher.messages)
        await teacher.send({"type": "grid-view", "peers": [peer["B1"], peer["A1"]]})
        shown = await teacher.next_message("grid", since=mark, timeout=20, where=lambda m: {
            s["peer_id"] for s in m["slots"]} == {peer["B1"], peer["A1"]})
        slot = {s["peer_id"]: s["slot"] for s in shown["slots"]}
        for name in ("B1", "A1"):
            counter = grid.video[slot[peer[name]]]
            await eventually(lambda c=counter, n=name: c.size == SIZES[n], timeout=20)
        cascade_b = next(f for f in b.node.features if f.name == "cascade")
        pull = next(iter(cascade_b.pulls.values()))
        assert pull.edge.uplinks.frames_up > 0
        # B2 is not shown anywhere: its video does not go up the link
        served = next(f for f in a.node.features if f.name == "cascade").stats()["serving"]
        remote = {u["peer_id"]: u for o in served for u in o["uplinks"]}
        assert remote[peer["B2"] + "/uplink"]["frames_in"] == 0, remote
        assert remote[peer["B1"] + "/uplink"]["frames_in"] > 0

        # B1 (on the edge) on stage: decoded at A only; A1 and B2 see and hear it
        marks = {n: len(r.messages) for n, r in rooms.items()}
        await teacher.send({"type": "call-on-stage", "peer_id": peer["B1"]})
        for name, room in rooms.items():
            await room.next_message("stage", since=marks[name], where=lambda m: (
                m["peer_id"] == peer["B1"]))
        for name in ("A1", "B2"):
            await eventually(lambda n=name: (lines[n].stage_video.size or (0,))[0] == 640, 20)
            await eventually(lambda n=name: lines[n].stage_audio.frames >= 25, 20)
        await eventually(lambda: grid.audio[0].frames >= 25, timeout=20)  # the teacher hears
        assert lines["B1"].stage_audio.frames == 0  # the stage classroom does not hear itself
        assert a.node.relay.stage_stats(LESSON)["frames_in"] > 0
        b_stage = b.node.relay.stage_stats(LESSON)
        assert b_stage["frames_in"] == 0 and b_stage["remote"], b_stage  # never decoded on B
        assert all(r["frames_encoded"] == 0 for r in b_stage["renditions"]), b_stage

        # A1 (on the origin) on stage: B2 on the edge gets it through the pulled lines
        mark = len(rooms["B2"].messages)
        await teacher.send({"type": "call-on-stage", "peer_id": peer["A1"]})
        await rooms["B2"].next_message("stage", since=mark, where=lambda m: (
            m["peer_id"] == peer["A1"]))
        await eventually(lambda: 0 < (lines["B2"].stage_video.size or (0,))[0] < 640, 20)
        b1_audio = lines["B1"].stage_audio.frames
        await eventually(lambda: lines["B1"].stage_audio.frames >= b1_audio + 25, timeout=20)

        # B1 leaves: its stand-in leaves A's uplinks and the teacher's grid is pushed again
        mark = len(teacher.messages)
        await lines.pop("B1").stop()
        await rooms["B1"].close()
        await teacher.next_message("grid", since=mark, timeout=20, where=lambda m: (
            peer["B1"] not in {s["peer_id"] for s in m["slots"]}))
        await eventually(lambda: peer["B1"] + "/uplink" not in {
            u["peer_id"] for u in a.node.relay.uplink_stats(LESSON)}, timeout=10)
    finally:
        if grid is not None:
            await grid.stop()
        for x in lines.values():
            await x.stop()
        for t in tracks:
            t.stop()
        for c in [teacher, *rooms.values()]:
            await c.close()
        await b.close()
        await a.close()
