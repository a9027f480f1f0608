"""The replay page in headless Chromium: plays, seeks to a chapter, falls back to audio only
on a throttled link; shows the shared slides while the recording has them (the teacher in a
corner) and the classroom on stage, switchable; chapter titles in the page's language only;
no debug text; still plays when /vendor/hls.min.js is missing. The recording (the teacher,
a share from 4 s to 13 s, a classroom on stage from 9 s to the end) is written by the
recorders into the server's library and recovered + packaged by the server at its
(re)start, as after a crash."""

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
from recording.tracks import TRACK_DIR
from tests.e2e.pages import stats, wait_until

pytestmark = pytest.mark.e2e

SECONDS = 16.0
SHARE = (4.0, 13.0)
STAGE = (9.0, SECONDS)


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
        # the share and the stage on the teacher's timeline (its first packet at t0=1000)
        for line, (start, end), size in (("share", SHARE, (480, 270)),
                                         ("stage", STAGE, (160, 120))):
            track = Recorder(directory / TRACK_DIR / line, line=line, clock=recorder)
            source = PacketSource(*size, 15, keyframe_every=2.0)
            for kind, packet, arrival in source.interleaved(end - start, 1000.0 + start):
                if kind == "video" or line == "stage":
                    track.enqueue(kind, packet, arrival)
            await track.stop()

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


def in_step(page, line: str, offset: float) -> None:
    """``line`` is the main picture and plays in step with the teacher's clock."""
    def ok() -> bool:
        s = stats(page)
        ln = s["lines"][line]
        return (s["layout"] == line and ln["videoWidth"] > 0 and not ln["paused"]
                and abs(ln["currentTime"] - (s["currentTime"] - offset)) < 0.6)
    wait_until(ok, 15, f"{line} shown in step")


def test_replay_plays_seeks_and_falls_back_to_audio(server, open_page, browser):
    server.stop()
    rid = write_recording(server.library)
    server.start()  # recovers the unfinished recording and packages it
    record = wait_until(lambda: (r := api(server, f"/api/recordings/{rid}"))["state"] == "ready"
                        and r, 120, "recording packaged")
    assert [c["title"] for c in record["chapters"]][1].endswith("比较大小")
    lines = {line["name"]: line for line in record["lines"]}
    assert [round(x) for x in lines["share"]["ranges"][0]] == [4, 13], lines
    assert round(lines["stage"]["ranges"][0][0]) == 9, lines
    page = open_page(server.base_url + record["replay_url"])
    # the page lists the audio-only rendition as soon as it starts, the video ones when
    # hls.js has parsed the master playlist: wait for the whole ladder
    wait_until(lambda: sorted(stats(page)["levels"]) == ["180p", "240p", "audio"], 20,
               "manifest loaded with 180p, 240p and audio renditions")
    assert stats(page)["connectionState"] == "hls.js"
    assert page.evaluate("document.body.dataset.player") == "hls.js"
    text = page.inner_text("body")
    assert "hls" not in text.lower() and "mp4" not in text.replace("MP4", ""), text
    # chapters in zh only (the page's language)
    chapters = page.locator("#chapters").inner_text()
    assert "练习：比较大小" in chapters and "开始上课" in chapters, chapters
    assert not any(w in chapters for w in ("Practice", "Lesson start")), chapters
    page.click('[data-action="seek-chapter"][data-index="0"]')  # press play at the start
    wait_until(lambda: stats(page)["currentTime"] > 2 and stats(page)["framesDecoded"] > 10,
               30, "playback advances with decoded frames")
    page.click('[data-action="seek-chapter"][data-index="1"]')
    wait_until(lambda: stats(page)["currentTime"] >= 8.0, 15, "seek to the chapter")
    assert stats(page)["currentTime"] < 14
    # 8 s: the slides are the main picture, the teacher small in a corner, in step
    in_step(page, "share", SHARE[0])
    assert page.locator("#corner").is_visible() and page.locator("#share").is_visible()
    box = page.locator("#share").bounding_box()
    corner = page.locator("#corner").bounding_box()
    assert corner["width"] < 0.3 * box["width"], (corner, box)
    assert page.locator('[data-view="stage"]').is_disabled()  # nobody on stage yet
    # 10.5 s: a classroom is on stage too; the viewer switches to it, then to the teacher
    page.evaluate("document.querySelector('#video').currentTime = 10.5")
    wait_until(lambda: not page.locator('[data-view="stage"]').is_disabled(), 10,
               "stage button enabled once a classroom is on stage")
    page.click('[data-view="stage"]')
    in_step(page, "stage", STAGE[0])
    assert page.locator("#stage").is_visible() and not page.locator("#share").is_visible()
    page.click('[data-view="teacher"]')
    wait_until(lambda: stats(page)["layout"] == "teacher", 5, "teacher only")
    assert not page.locator("#stage").is_visible() and not page.locator("#corner").is_visible()
    page.close()
    # a phone opens the same link, then its link thins to 200 kbit/s before it presses
    # play: the video rungs (BANDWIDTH ~290 kbit/s in the master: 180 kbit/s video + the
    # 64 kbit/s audio, peaks) do not fit, the page falls back to audio (its ~70 kbit/s fit).
    # The fallback waits for hls.js's first estimate, i.e. the first ~1 Mbit segment: at
    # 120 kbit/s that alone took ~11 s, at 200 kbit/s ~8 s
    thin = open_page(server.base_url + record["replay_url"])
    wait_until(lambda: stats(thin)["levels"], 30, "manifest loaded")
    cdp = thin.context.new_cdp_session(thin)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 150, "downloadThroughput": 200_000 // 8,
        "uploadThroughput": 64_000 // 8})
    thin.click('[data-action="seek-chapter"][data-index="0"]')
    wait_until(lambda: stats(thin)["videoTier"] == "audio", 60,
               "falls back to the audio-only rendition")
    assert stats(thin)["audioMode"] == "auto"
    before = stats(thin)["currentTime"]
    wait_until(lambda: stats(thin)["currentTime"] > before + 2, 40,
               "audio keeps playing on the thin link")
    thin.close()
    # no hls.js on the server (npm never ran): the browser's own HLS, else the MP4; in English
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    ctx.route("**/vendor/hls.min.js", lambda route: route.fulfill(status=404, body="missing"))
    bare = ctx.new_page()
    bare.goto(server.base_url + record["replay_url"] + "&lang=en")
    wait_until(lambda: stats(bare)["player"] in ("native-hls", "mp4"), 20, "a player chosen")
    bare.click('[data-action="seek-chapter"][data-index="0"]')
    wait_until(lambda: stats(bare)["currentTime"] > 2, 30, "plays without hls.js")
    assert bare.locator("#status").inner_text().strip() == ""
    chapters = bare.locator("#chapters").inner_text()
    assert "Practice: 比较大小" in chapters and "练习" not in chapters, chapters
    assert "native" not in bare.inner_text("body")
    ctx.close()
