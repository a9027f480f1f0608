"""The library across nodes: two nodes on one real redis-server, a recording made on A is
listed by B and its media streams through B byte for byte; tokens and signatures are
still checked; a node that is down is named, not waited for."""

from __future__ import annotations

import time

import aiohttp
import pytest

from signaling.nodes import NodeBoard
from signaling.recordings.routes import sign
from tests.helpers import free_port, start_server
from tests.recording.test_library_api import PATH_TRICKS, make_recording

pytestmark = pytest.mark.redis


def bearer(server, role: str, lesson: str, school: str = "") -> dict[str, str]:
    return {"Authorization": "Bearer " + server.token(role, lesson, school=school)}


async def test_a_recording_on_a_is_listed_and_played_through_b(redis_url):
    a = await start_server(redis_url=redis_url, node_id="node-a")  # one process: own ids
    b = await start_server(redis_url=redis_url, node_id="node-b")
    try:
        feature_a = next(f for f in a.node.features if f.name == "recording")
        rid = await make_recording(feature_a, "far-a", "山村小学", seconds=3.0)
        other = await make_recording(feature_a, "far-x", "河口教学点", seconds=1.0)
        async with aiohttp.ClientSession() as http:
            url = b.base_url + "/api/recordings"
            async with http.get(url, headers=bearer(b, "admin", "*")) as r:
                assert r.status == 200
                body = await r.json()
            assert body["unreachable_nodes"] == []
            by_id = {e["id"]: e for e in body["recordings"]}
            assert set(by_id) == {rid, other} and by_id[rid]["node"] == "node-a"
            # the holder applies the caller's own scope: a student sees only its school's
            async with http.get(url, headers=bearer(b, "student", "x", "山村小学")) as r:
                assert [e["id"] for e in (await r.json())["recordings"]] == [rid]
            async with http.get(url, headers=bearer(b, "student", "x", "河口教学点"),
                                params={"q": "far-a"}) as r:
                assert (await r.json())["recordings"] == []
            async with http.get(url) as r:
                assert r.status == 401
            async with http.get(url, headers={"Authorization": "Bearer forged.token"}) as r:
                assert r.status == 401

            # the replay link of the listing, opened on B, is served by A through B
            entry = by_id[rid]
            exp, sig = entry["replay_url"].split("exp=")[1].split("&sig=")
            async with http.get(f"{b.base_url}/api/replay/{rid}",
                                params={"exp": exp, "sig": sig}) as r:
                assert r.status == 200
                info = await r.json()
            assert info["id"] == rid and info["media"] == f"/media/{rid}/{exp}/{sig}/"
            mp4 = (feature_a.catalog.dir_of(rid) / "replay" / "lesson.mp4").read_bytes()
            assert len(mp4) > 1000
            async with http.get(b.base_url + info["media"] + "lesson.mp4") as r:
                assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
                assert await r.read() == mp4
            async with http.get(b.base_url + info["media"] + "lesson.mp4",
                                headers={"Range": "bytes=100-199"}) as r:
                assert r.status == 206 and await r.read() == mp4[100:200]
                assert r.headers["Content-Range"] == f"bytes 100-199/{len(mp4)}"
            async with http.get(b.base_url + info["media"] + "hls/master.m3u8") as r:
                assert r.status == 200 and (await r.text()).startswith("#EXTM3U")

            # no or a bad signature: refused on B, nothing fetched from A
            bad = int(time.time()) + 60
            for path in (f"/media/{rid}/{bad}/{sign('wrong-secret', rid, bad)}/lesson.mp4",
                         f"/media/{rid}/{int(exp) + 1}/{sig}/lesson.mp4",
                         f"/media/{other}/{exp}/{sig}/lesson.mp4"):
                async with http.get(b.base_url + path) as r:
                    assert r.status == 403, path
            async with http.get(f"{b.base_url}/api/replay/{rid}") as r:
                assert r.status == 403
            for name in PATH_TRICKS:
                async with http.get(f"{b.base_url}/media/{rid}/{exp}/{sig}/{name}") as r:
                    assert r.status in (403, 404), (name, r.status)
                    assert b"secret" not in await r.read()
            # an unknown recording with a valid signature: 404 from every node
            ghost = rid[:-1] + ("0" if rid[-1] != "0" else "1")
            gsig = sign(b.secret, ghost, bad)
            async with http.get(f"{b.base_url}/media/{ghost}/{bad}/{gsig}/lesson.mp4") as r:
                assert r.status == 404

            # A stops; a node whose record is live but that does not answer is named
            await a.close()
            a = None
            board = NodeBoard(redis_url)
            try:
                await board.put({"id": "node-dead",
                                 "http_url": f"http://127.0.0.1:{free_port()}"})
                t0 = time.monotonic()
                async with http.get(url, headers=bearer(b, "admin", "*")) as r:
                    body = await r.json()
                assert time.monotonic() - t0 < 4
                assert body == {"recordings": [], "unreachable_nodes": ["node-dead"]}
                async with http.get(b.base_url + info["media"] + "lesson.mp4") as r:
                    assert r.status == 404
            finally:
                await board.close()
    finally:
        if a is not None:
            await a.close()
        await b.close()
