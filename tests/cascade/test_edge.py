"""A lesson across two nodes on one Redis: the teacher on node A, a classroom on node B.

Node B has no teacher's media of its own; it pulls the lines its classroom uses from the
lesson's origin (A) over the cascade link and hands the packets on as they are
(signaling/cascade.py, media_relay/cascade.py). Before the cascade, B's classroom was
"connected" and decoded 0 frames.
"""

from __future__ import annotations

import aiohttp
import pytest

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from signaling.cascade import AUTH_HEADER, auth_header
from tests.helpers import eventually, start_server

pytestmark = pytest.mark.redis


async def test_classroom_on_an_edge_decodes_the_origins_tiers(redis_url):
    a = await start_server(redis_url=redis_url, presence_ttl=3.0, roster_poll=0.5,
                           node_id="node-a")
    b = await start_server(secret=a.secret, redis_url=redis_url, presence_ttl=3.0,
                           roster_poll=0.5, node_id="node-b")  # one process: ids by hand
    teacher = ClassroomClient(a.base_url, a.token("teacher", name="T"))
    near = ClassroomClient(a.base_url, a.token("classroom", name="A1"))
    far = ClassroomClient(b.base_url, b.token("classroom", name="B1"))
    try:
        for client in (teacher, near, far):
            await client.connect()
        await teacher.start_lesson()
        await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())
        await near.subscribe()
        await far.subscribe()
        try:
            await far.wait_for(lambda: far.video_frames >= 20 and far.audio_frames >= 20,
                               timeout=20)
        except TimeoutError:
            cascade = next(f for f in b.node.features if f.name == "cascade")
            print("DEBUG", far.video_frames, far.audio_frames, cascade.stats(),
                  next(f for f in a.node.features if f.name == "cascade").stats(),
                  await a.node.features[0].board.nodes(), a.node.features[0].origins,
                  b.node.relay.pulled_lessons())
            raise
        await near.wait_for(lambda: near.video_frames >= 20, timeout=10)
        # B encodes nothing: every packet its classroom got came from A's encoder
        b_stats = b.node.relay.stats()["lessons"]
        lesson = next(iter(b_stats.values()))
        assert all(r["frames_encoded"] == 0 for r in lesson["renditions"]), lesson
        assert sum(r["frames_relayed"] for r in lesson["renditions"]) >= 20
        cascade = next(f for f in b.node.features if f.name == "cascade")
        pull = next(iter(cascade.pulls.values()))
        assert pull.connected and pull.origin == a.node.config.node_id
        assert pull.edge.stats()["hop_ms"]["p95"] is not None
        assert far.connection_state("subscribe") == "connected"
        # an edge never serves the lesson it pulls: A asking B for it would get its own
        # media back (a loop of two nodes, each adding its offset to the timestamps)
        value, _ = auth_header(a.secret, a.node.config.node_id, "math-1")
        async with aiohttp.ClientSession() as http:
            resp = await http.get(b.base_url + "/cascade/link/math-1",
                                  headers={AUTH_HEADER: value})
            assert resp.status == 403
            assert pull.connected  # and B's own pull goes on
        # ops see it (one process here: both nodes' series in one registry)
        async with aiohttp.ClientSession() as http:
            async with http.get(b.base_url + "/metrics") as resp:
                text = await resp.text()
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line.startswith("classroom_cascade")}
        assert values['classroom_cascade_links{role="edge"}'] >= 1, values
        assert values['classroom_cascade_links{role="origin"}'] >= 1, values
        assert values['classroom_cascade_frames_total{direction="down"}'] >= 20, values
        assert values["classroom_cascade_hop_seconds_count"] >= 20, values
    finally:
        for client in (teacher, near, far):
            await client.close()
        await b.close()
        await a.close()


async def test_a_forged_link_is_refused(redis_url):
    a = await start_server(redis_url=redis_url)
    try:
        url = a.base_url.replace("http", "ws") + "/cascade/link/math"
        async with aiohttp.ClientSession() as http:
            forged, _ = auth_header("not-the-secret", a.node.config.node_id, "math")
            for headers in ({}, {AUTH_HEADER: forged}, {AUTH_HEADER: "x.y.z"}):
                resp = await http.get(url.replace("ws", "http", 1), headers=headers)
                assert resp.status == 403, headers
            # genuine signature but a node id with no live record
            stranger, _ = auth_header(a.node.config.secret, "nobody-1", "math")
            resp = await http.get(url.replace("ws", "http", 1), headers={AUTH_HEADER: stranger})
            assert resp.status == 403

            async def listed():
                nodes = {n["id"] for n in await a.node.features[0].board.nodes()}
                return a.node.config.node_id in nodes
            await eventually(listed, timeout=5)
    finally:
        await a.close()
