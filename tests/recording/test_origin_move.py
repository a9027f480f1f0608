"""A lesson's origin moves mid-lesson and its recording follows (issue 14, item 4).

* Nodes with their own library folders (two nodes on one real redis-server): A records
  part 1, A stops, the teacher publishes to B, which records part 2 in its own folder
  (same ``group``); A comes back, sees the origin on B and packages its part at once. The
  listing on either node has ONE entry with both parts, and each part's media plays
  through either node.
* Nodes sharing one folder (``--workers``): the second worker continues the same
  recording as a new part, and only once the first one no longer writes it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from recording.segments import read_index
from tests.helpers import TEST_SECRET, RunningServer, eventually, free_port
from tests.recording.conftest import teacher_publishing

pytestmark = pytest.mark.redis


async def serve(library: Path, redis_url: str, node_id: str) -> RunningServer:
    """A node on a given library folder (kept across its restart) under a given id."""
    from signaling.app import build_app
    from signaling.config import Config

    port = free_port()
    app = build_app(Config(host="127.0.0.1", port=port, secret=TEST_SECRET, library=library,
                           redis_url=redis_url, node_id=node_id))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningServer(f"http://127.0.0.1:{port}", app, runner, TEST_SECRET)


def recording_of(server: RunningServer):
    return next(f for f in server.node.features if f.name == "recording")


def state_of(server: RunningServer, rid: str) -> str | None:
    return (recording_of(server).catalog.get(rid) or {}).get("state")


async def recording_started(teacher) -> str:
    message = await teacher.next_message(
        "recording", where=lambda m: m["state"] == "recording", timeout=15)
    return message["recording_id"]


async def listing(http: aiohttp.ClientSession, server: RunningServer) -> list[dict]:
    admin = {"Authorization": "Bearer " + server.token("admin", "*")}
    async with http.get(server.base_url + "/api/recordings", headers=admin) as r:
        assert r.status == 200
        return (await r.json())["recordings"]


async def test_origin_move_between_nodes_is_one_recording_of_two_parts(redis_url):
    lesson = "move-rec-1"
    lib_a = Path(tempfile.mkdtemp(prefix="classroom-lib-a-"))
    lib_b = Path(tempfile.mkdtemp(prefix="classroom-lib-b-"))
    a = await serve(lib_a, redis_url, "move-a")
    b = await serve(lib_b, redis_url, "move-b")
    teacher = None
    try:
        token = a.token("teacher", lesson, name="王老师", school="城区一小")
        teacher = await teacher_publishing(a.base_url, token)
        await teacher.start_lesson()
        rid_a = await recording_started(teacher)
        await eventually(lambda: len(read_index(lib_a / "recordings" / rid_a)) >= 2,
                         timeout=20, interval=0.1)
        await teacher.close()
        await a.close()  # the origin goes away mid-lesson
        a = None

        teacher = await teacher_publishing(b.base_url, token)  # B becomes the origin
        rid_b = await recording_started(teacher)
        assert rid_b != rid_a  # B's own folder: a part of its own ...
        record_b = recording_of(b).catalog.get(rid_b)
        assert record_b["group"] and record_b["group"].startswith(lesson + "@")
        await eventually(lambda: len(read_index(lib_b / "recordings" / rid_b)) >= 2,
                         timeout=20, interval=0.1)

        # A comes back while B records: its part is recovered, sees the origin on B and is
        # packaged (not kept waiting for a teacher who publishes elsewhere)
        a = await serve(lib_a, redis_url, "move-a")
        assert recording_of(a).catalog.get(rid_a)["group"] == record_b["group"]
        await eventually(lambda: state_of(a, rid_a) == "ready", timeout=30, interval=0.1)
        assert state_of(b, rid_b) == "recording"
        await teacher.end_lesson()
        await eventually(lambda: state_of(b, rid_b) == "ready", timeout=30, interval=0.1)

        async with aiohttp.ClientSession() as http:
            for via in (a, b):
                entries = await listing(http, via)
                assert len(entries) == 1, entries  # ... listed as one recording
                entry = entries[0]
                assert entry["id"] == rid_a and entry["state"] == "ready"
                assert [(p["recording"], p["node"]) for p in entry["parts"]] == [
                    (rid_a, "move-a"), (rid_b, "move-b")]
                members = entry["recordings"]
                assert [m["id"] for m in members] == [rid_a, rid_b]
                assert entry["parts"][1]["start"] == pytest.approx(members[0]["duration"],
                                                                   abs=0.01)
                assert entry["duration"] == pytest.approx(
                    members[0]["duration"] + members[1]["duration"], abs=0.01)
                for member, holder in zip(members, (lib_a, lib_b), strict=True):
                    assert member["duration"] > 2
                    mp4 = (holder / "recordings" / member["id"] / "replay"
                           / "lesson.mp4").read_bytes()
                    media = member["download_url"].split("?")[0]
                    async with http.get(via.base_url + media) as r:  # local or proxied
                        assert r.status == 200 and await r.read() == mp4
                    query = member["replay_url"].split("?", 1)[1]
                    async with http.get(f"{via.base_url}/api/replay/{member['id']}?{query}") as r:
                        assert r.status == 200 and (await r.json())["id"] == member["id"]
    finally:
        if teacher is not None:
            await teacher.close()
        if a is not None:
            await a.close()
        await b.close()


async def test_origin_move_between_workers_continues_the_same_recording(redis_url):
    lesson = "move-rec-2"
    library = Path(tempfile.mkdtemp(prefix="classroom-lib-"))  # one folder, two nodes
    w1 = await serve(library, redis_url, "move-w1")
    w2 = await serve(library, redis_url, "move-w2")
    teacher = None
    try:
        token = w1.token("teacher", lesson, name="王老师", school="城区一小")
        teacher = await teacher_publishing(w1.base_url, token)
        await teacher.start_lesson()
        rid = await recording_started(teacher)
        directory = library / "recordings" / rid
        await eventually(lambda: len(read_index(directory)) >= 2, timeout=20, interval=0.1)
        # w1 writes it: w2 cannot take it over (never two live writers of one recording)
        group = recording_of(w1).catalog.get(rid)["group"]
        assert not await recording_of(w2).library._continue(lesson, rid, adopt=group)
        assert recording_of(w2).catalog.get(rid)["owner"] == "move-w1"

        await teacher.close()
        await w1.close()  # the worker goes away (and its writer lock with it)
        w1 = None
        first_part = read_index(directory)
        teacher = await teacher_publishing(w2.base_url, token)
        assert await recording_started(teacher) == rid  # the same recording goes on
        await eventually(lambda: len(read_index(directory)) >= len(first_part) + 2,
                         timeout=20, interval=0.1)
        await teacher.end_lesson()
        await eventually(lambda: state_of(w2, rid) in ("ready", "failed"), timeout=30,
                         interval=0.1)
        record = recording_of(w2).catalog.get(rid)
        assert record["state"] == "ready" and record["owner"] == "move-w2"
        assert len(record["parts"]) == 2
        segments = read_index(directory)
        assert [s.seq for s in segments] == list(range(1, len(segments) + 1))
        async with aiohttp.ClientSession() as http:
            entries = await listing(http, w2)
        assert [(e["id"], len(e["parts"])) for e in entries] == [(rid, 2)]
    finally:
        if teacher is not None:
            await teacher.close()
        if w1 is not None:
            await w1.close()
        await w2.close()
