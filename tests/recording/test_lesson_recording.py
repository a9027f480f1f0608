"""A real lesson (aiortc teacher through the real server) recorded, packaged and replayed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import av

from classroom_client import ClassroomClient
from recording.catalog import Catalog
from recording.packager import REPLAY_DIR
from tests.helpers import eventually, start_server
from tests.recording.conftest import decode_counts, teacher_publishing

LESSON = "rec-math-1"


async def test_full_lesson_is_recorded_and_packaged():
    server = await start_server()
    feature = next(f for f in server.node.features if f.name == "recording")
    # small chunks so the background worker transcodes some of this short lesson while
    # it is recorded (60 s by default)
    feature.config.chunk_seconds = 2.5
    feature.config.chunk_check = 0.3
    try:
        teacher = await teacher_publishing(
            server.base_url, server.token("teacher", LESSON, name="王老师", school="城区一小"))
        await teacher.start_lesson()
        started = await teacher.next_message(
            "recording", where=lambda m: m["state"] == "recording", timeout=15)
        rid = started["recording_id"]
        t0 = time.monotonic()
        # a remote classroom sees the indicator and, first time for its school, the notice
        room = ClassroomClient(server.base_url, server.token(
            "classroom", LESSON, name="一年级1班", school="山村小学"))
        welcome = await room.connect()
        assert welcome["recording"]["state"] == "recording"
        assert welcome["recording_consent_required"] is True
        mark = len(room.messages)
        await room.send({"type": "recording-consent", "name": "张老师"})
        ack = await room.next_message("recording", since=mark, timeout=5)
        assert "山村小学" in ack["consent_schools"]
        again = ClassroomClient(server.base_url, server.token(
            "classroom", LESSON, name="一年级2班", school="山村小学"))
        assert (await again.connect())["recording_consent_required"] is False
        await again.close()
        assert feature.catalog.consent("山村小学")["by"] == "张老师"
        # the teacher pauses for a second: that second is not in the recording
        await teacher.request({"type": "recording-pause"}, "recording")
        assert teacher.messages[-1]["state"] == "paused"
        await asyncio.sleep(1.0)
        await teacher.request({"type": "recording-resume"}, "recording")
        paused = 1.0
        await room.close()
        # a practice question mid-lesson becomes a chapter
        await asyncio.sleep(2)
        await server.node.hub.store.publish(LESSON, {
            "type": "quiz-question", "round": {"round_id": "r-1", "title": "分数的意义"}})
        # a classroom called on stage (issue 7's lesson event) becomes a chapter too
        await server.node.hub.store.publish(LESSON, {
            "type": "stage", "peer_id": "p-room", "name": "一年级1班", "school": "山村小学",
            "at": time.time()})
        await asyncio.sleep(4)
        # the background worker has packaged a chunk of the lesson (it is niced: on a
        # busy machine it may take a while)
        chunk = feature.catalog.dir_of(rid) / "chunks" / "c-00001" / "chunk.json"
        await eventually(chunk.exists, timeout=60, interval=0.2)
        await teacher.end_lesson()
        lesson_seconds = time.monotonic() - t0
        await teacher.close()

        catalog: Catalog = feature.catalog
        await eventually(lambda: (catalog.get(rid) or {}).get("state") in ("ready", "failed"),
                         timeout=90, interval=0.2)
        record = catalog.get(rid)
        assert record["state"] == "ready", record
        assert record["lesson"] == LESSON and record["teacher"] == "王老师"
        assert record["school"] == "城区一小" and "城区一小" in record["schools"]
        assert abs(record["duration"] - (lesson_seconds - paused)) < 2.5, (
            record["duration"], lesson_seconds)
        assert "山村小学" in record["schools"]
        titles = [c["title"] for c in record["chapters"]]
        assert titles[0].startswith("开始上课")
        practice = [c for c in record["chapters"] if c["kind"] == "practice"]
        assert len(practice) == 1 and "分数的意义" in practice[0]["title"]
        # pushed ~2 s after the resume, ~4 s before the end (the timeline has no pause)
        assert 0.3 < practice[0]["start"] < record["duration"] - 2.5, practice
        stage = [c for c in record["chapters"] if c["kind"] == "stage"]
        assert [c["title"] for c in stage] == ["上台：一年级1班"], record["chapters"]
        assert abs(stage[0]["start"] - practice[0]["start"]) < 1.0
        assert record["size"] > 0
        # chunks transcoded during the lesson were reused by the final packaging
        assert record["chunks"]["reused"] >= 1, record["chunks"]

        replay = catalog.dir_of(rid) / REPLAY_DIR
        names = {r["name"] for r in record["renditions"]}
        assert "audio" in names and "240p" in names and "180p" in names
        # every rendition decodes with PyAV to about the lesson's length
        for rendition in record["renditions"]:
            playlist = replay / "hls" / rendition["name"] / "index.m3u8"
            frames, samples, video_seconds = decode_counts(playlist)
            assert samples / 48000 > record["duration"] - 1.5, rendition
            if rendition["kind"] == "video":
                assert frames > 0 and video_seconds > record["duration"] - 2.5, rendition
                with av.open(str(playlist)) as c:
                    assert c.streams.video[0].codec_context.name == "h264"
                    assert c.streams.video[0].codec_context.height == rendition["height"]
            else:
                assert frames == 0
        master = (replay / "hls" / "master.m3u8").read_text()
        assert master.count("#EXT-X-STREAM-INF") == len(record["renditions"])
        assert "mp4a.40.2" in master and "avc1." in master
        vtt = (replay / "chapters.vtt").read_text(encoding="utf-8")
        assert "分数的意义" in vtt
        frames, samples, _ = decode_counts(replay / "lesson.mp4")
        assert frames > 3 * record["duration"] and samples > 48000 * (record["duration"] - 1.5)
        assert (replay / "poster.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert list((replay / "thumbs").glob("t*.jpg"))

        # the replay link plays through HTTP: signed, Range-capable
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": "Bearer " + server.token(
                "student", LESSON, school="城区一小")}
            async with http.get(f"{server.base_url}/api/recordings/{rid}", headers=auth) as r:
                assert r.status == 200
                body = await r.json()
            url = body["replay_url"]
            async with http.get(server.base_url + "/api/replay/" + rid + "?" +
                                url.split("?", 1)[1]) as r:
                info = await r.json()
            media = server.base_url + info["media"]
            async with http.get(media + "hls/master.m3u8") as r:
                assert r.status == 200 and "EXT-X-STREAM-INF" in await r.text()
            async with http.get(media + "lesson.mp4", headers={"Range": "bytes=0-99"}) as r:
                assert r.status == 206 and len(await r.read()) == 100
    finally:
        await server.close()
