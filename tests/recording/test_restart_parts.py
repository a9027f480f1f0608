"""A server restarted mid-lesson: the recording continues as a new part of the same one.

The lesson's state outlives the node in the embedded store's file (<library>/classroom.db)
and in Redis; the rule does not depend on the store (the library asks whether the lesson is
still live); when the teacher's media returns, the
recording cut by the restart goes on, one record in the library with two parts played in
sequence (one timeline), and a chapter where the second part begins.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from recording.packager import REPLAY_DIR
from recording.segments import read_index
from tests.helpers import TEST_SECRET, RunningServer, eventually, free_port
from tests.recording.conftest import decode_counts, teacher_publishing

LESSON = "restart-rec-1"


async def serve(library: Path, redis_url: str | None) -> RunningServer:
    """``tests.helpers.start_server`` on a given library folder (kept across the restart)."""
    from signaling.app import build_app
    from signaling.config import Config

    port = free_port()
    app = build_app(Config(host="127.0.0.1", port=port, secret=TEST_SECRET, library=library,
                           redis_url=redis_url))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningServer(f"http://127.0.0.1:{port}", app, runner, TEST_SECRET)


def recording_of(server: RunningServer):
    return next(f for f in server.node.features if f.name == "recording")


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_restart_mid_lesson_continues_the_recording_as_a_part(backend, request):
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    library = Path(tempfile.mkdtemp(prefix="classroom-lib-"))
    server = await serve(library, redis_url)
    second = None
    try:
        token = server.token("teacher", LESSON, name="王老师", school="城区一小")
        teacher = await teacher_publishing(server.base_url, token)
        await teacher.start_lesson()
        started = await teacher.next_message(
            "recording", where=lambda m: m["state"] == "recording", timeout=15)
        rid = started["recording_id"]
        directory = library / "recordings" / rid
        # one complete segment (2 s, cut at a keyframe) on disk is enough for the first part
        await eventually(lambda: len(read_index(directory)) >= 1, timeout=20, interval=0.1)
        await teacher.close()
        await server.close()  # the node goes away mid-lesson
        first_part = read_index(directory)
        second = await serve(library, redis_url)
        feature = recording_of(second)
        assert feature.library.resumable == {LESSON: rid}  # waits for the teacher
        assert feature.catalog.get(rid)["state"] == "interrupted"

        teacher = await teacher_publishing(second.base_url, token)  # the media returns
        resumed = await teacher.next_message(
            "recording", where=lambda m: m["state"] == "recording", timeout=15)
        assert resumed["recording_id"] == rid
        await eventually(lambda: len(read_index(directory)) >= len(first_part) + 2,
                         timeout=20, interval=0.1)
        await teacher.end_lesson()
        ended = time.monotonic()
        await teacher.close()
        await eventually(lambda: (feature.catalog.get(rid) or {}).get("state")
                         in ("ready", "failed"), timeout=60, interval=0.1)
        ready_after = time.monotonic() - ended

        record = feature.catalog.get(rid)
        assert record["state"] == "ready", record
        assert [r["id"] for r in feature.catalog.list()] == [rid]  # one recording
        assert len(record["parts"]) == 2, record["parts"]
        segments = read_index(directory)
        part2 = record["parts"][1]["start"]
        # the second part right after the first on one timeline, seq numbers going on
        first_end = (first_part[-1].end_ms - first_part[0].start_ms) / 1000
        assert first_end <= part2 <= first_end + 0.1, (part2, first_end)
        assert [s.seq for s in segments] == list(range(1, len(segments) + 1))
        assert abs(record["duration"] - (segments[-1].end_ms - segments[0].start_ms) / 1000) < 0.01
        assert record["duration"] > part2 + 2
        parts = [c for c in record["chapters"] if c["kind"] == "part"]
        assert len(parts) == 1 and abs(parts[0]["start"] - part2) < 0.1, record["chapters"]
        # both parts play, in sequence, in one replay
        frames, samples, seconds = decode_counts(directory / REPLAY_DIR / "lesson.mp4")
        assert seconds > record["duration"] - 1.5 and samples / 48000 > record["duration"] - 1.5
        async with aiohttp.ClientSession() as http:
            admin = {"Authorization": "Bearer " + second.token("admin", "*")}
            async with http.get(second.base_url + "/api/recordings", headers=admin) as r:
                listed = (await r.json())["recordings"]
        assert [(r["id"], len(r["parts"])) for r in listed] == [(rid, 2)]
        print(f"two parts, {record['duration']:.1f} s, ready {ready_after:.1f} s after the end")
    finally:
        if second is not None:
            await second.close()
        await asyncio.sleep(0)
