"""The replay page in headless Chromium: plays, seeks to a chapter, falls back to audio only
on a throttled link. The recording is written by the recorder into the server's library and
recovered + packaged by the server at its (re)start, as after a crash."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from loadtests.packet_source import PacketSource
from recording.catalog import Catalog, new_recording_id
from recording.chapters import append_event
from recording.recorder import Recorder
from tests.e2e.pages import stats, wait_until

pytestmark = pytest.mark.e2e

SECONDS = 16.0


def write_recording(library) -> str:
    catalog = Catalog(library)
    rid = new_recording_id("replay-1")
    now = time.time()
    catalog.create({"id": rid, "lesson": "replay-1", "title": "分数的意义", "teacher": "王老师",
                    "school": "城区一小", "schools": ["城区一小"], "state": "recording",
                    "started_at": now, "ended_at": None, "duration": 0, "chapters": []})
    directory = catalog.dir_of(rid)

    async def record() -> None:
        recorder = Recorder(directory)
        PacketSource(320, 240, 30, keyframe_every=2.0, noise=True).feed(recorder, SECONDS)
        await recorder.stop()

    thread = threading.Thread(target=asyncio.run, args=(record(),))
    thread.start()
    thread.join(120)
    append_event(directory, {"t": 8000, "type": "quiz-question",
                             "round": {"round_id": "r1", "title": "比较大小"}})
    return rid


def api(server, path: str) -> dict:
    req = urllib.request.Request(server.base_url + path, headers={
        "Authorization": "Bearer " + server.token("admin", "*")})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return {"state": f"http {exc.code}"}


def test_replay_plays_seeks_and_falls_back_to_audio(server, open_page):
    server.stop()
    rid = write_recording(server.library)
    server.start()  # recovers the unfinished recording and packages it
    record = wait_until(lambda: (r := api(server, f"/api/recordings/{rid}"))["state"] == "ready"
                        and r, 120, "recording packaged")
    assert [c["title"] for c in record["chapters"]][1].endswith("比较大小")
    page = open_page(server.base_url + record["replay_url"])
    # the page lists the audio-only rendition as soon as it starts, the video ones when
    # hls.js has parsed the master playlist: wait for the whole ladder
    wait_until(lambda: sorted(stats(page)["levels"]) == ["180p", "240p", "audio"], 20,
               "manifest loaded with 180p, 240p and audio renditions")
    assert stats(page)["connectionState"] == "hls.js"
    page.click('[data-action="seek-chapter"][data-index="0"]')  # press play at the start
    wait_until(lambda: stats(page)["currentTime"] > 2 and stats(page)["framesDecoded"] > 10,
               30, "playback advances with decoded frames")
    page.click('[data-action="seek-chapter"][data-index="1"]')
    wait_until(lambda: stats(page)["currentTime"] >= 8.0, 15, "seek to the chapter")
    assert stats(page)["currentTime"] < 14
    # a phone opens the same link, then its link thins to ~120 kbit/s before it presses
    # play: the video rungs (~200 kbit/s and up) do not fit, the page falls back to audio
    thin = open_page(server.base_url + record["replay_url"])
    wait_until(lambda: stats(thin)["levels"], 30, "manifest loaded")
    cdp = thin.context.new_cdp_session(thin)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 150, "downloadThroughput": 120_000 // 8,
        "uploadThroughput": 64_000 // 8})
    thin.click('[data-action="seek-chapter"][data-index="0"]')
    wait_until(lambda: stats(thin)["videoTier"] == "audio", 60,
               "falls back to the audio-only rendition")
    assert stats(thin)["audioMode"] == "auto"
    before = stats(thin)["currentTime"]
    wait_until(lambda: stats(thin)["currentTime"] > before + 2, 40,
               "audio keeps playing on the thin link")
