"""Honest states (issue 14 item 6, classroom_web/static/watchdog.js): a classroom TV (Chromium
with no camera flags: a TV with no camera) whose connection stays up while the teacher's
media stops says so, never "上课中" / "直播中" over a black screen, and recovers.

* The teacher's video stops, its sound goes on (the relay still says the teacher publishes):
  within ~6 s the TV says "只有声音：5 秒没有收到老师的画面，正在重新连接…", its status and
  on-air badge are ``no-media``, it subscribes again (sound still arrives), and once the
  video is back it decodes again with the notice gone.
* The teacher sends nothing at all: the relay says so (``media {publisher: false}`` after
  2 s) and the TV says "老师的画面和声音暂时中断…" while its socket and connection stay
  up; when the teacher's media is back it decodes again within 5 s.

The teacher is the headless client (aiortc) with tracks the test can hold; one node.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from classroom_client.media import AUDIO_RATE, SyntheticAudioTrack, SyntheticVideoTrack
from tests.e2e.conftest import ServerProcess
from tests.e2e.pages import LIVE, missing_browser_reason, stats, wait_until
from tests.e2e.test_no_camera import HeadlessTeacher

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SOUND_ONLY = "只有声音：5 秒没有收到老师的画面，正在重新连接…"
NO_PICTURE = "已连接，但 5 秒没有收到老师的画面，正在重新连接…"
TEACHER_STOPPED = "老师的画面和声音暂时中断，恢复后会自动继续"

TV_STATE = """
async () => {
  const s = await window.classroomStats();
  const status = document.querySelector("#status");
  const detail = document.querySelector("#detail");
  const badge = document.querySelector("#on-air");
  return {status: status.textContent.trim(), state: status.getAttribute("data-state"),
          detail: detail.hidden ? "" : detail.textContent.trim(),
          badge: badge.getAttribute("data-state"), badgeText: badge.textContent.trim(),
          health: s.mediaHealth, resubscribes: s.resubscribes, frames: s.framesDecoded,
          audio: s.audioBytesReceived, pc: s.connectionState};
}
"""


async def _hold(track: Any, flowing: threading.Event, period: float) -> None:
    """Wait while the test holds the track; then pace on from now (no burst)."""
    if flowing.is_set():
        return
    while not flowing.is_set():
        await asyncio.sleep(0.02)
    track._start = time.monotonic() - track.frames_sent * period


class HeldVideo(SyntheticVideoTrack):
    """The synthetic camera; sends nothing while ``flowing`` is clear."""

    def __init__(self, flowing: threading.Event) -> None:
        super().__init__(320, 240)
        self.flowing = flowing

    async def recv(self) -> Any:
        await _hold(self, self.flowing, 1 / self.fps)
        return await super().recv()


class HeldAudio(SyntheticAudioTrack):
    """The synthetic tone; sends nothing while ``flowing`` is clear."""

    def __init__(self, flowing: threading.Event) -> None:
        super().__init__()
        self.flowing = flowing

    async def recv(self) -> Any:
        await _hold(self, self.flowing, self._samples / AUDIO_RATE)
        return await super().recv()


class HoldingTeacher(HeadlessTeacher):
    """The headless teacher (lesson started) whose camera and sound the test can hold."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(base_url, token)
        self.video = threading.Event()
        self.sound = threading.Event()
        self.video.set()
        self.sound.set()

    def tracks(self) -> tuple[Any, Any]:
        return HeldVideo(self.video), HeldAudio(self.sound)


@pytest.fixture(scope="module")
def node() -> Iterator[ServerProcess]:
    srv = ServerProcess([], Path(tempfile.mkdtemp(prefix="classroom-honest-")))
    srv.start()
    yield srv
    srv.stop()


def tv_state(page: Any) -> dict[str, Any]:
    return page.evaluate(TV_STATE)


def decoding(page: Any, since: float, frames: int = 15) -> dict[str, Any] | None:
    """The TV decodes again (``frames`` more than ``since``) and says so."""
    now = tv_state(page)
    ok = (now["frames"] >= since + frames and now["status"] == LIVE and now["state"] == "live"
          and now["badge"] == "live" and now["health"] == "flowing" and not now["detail"])
    return now if ok else None


def open_tv(node: ServerProcess, lesson: str, tv_browser: Any, open_page: Any) -> Any:
    token = node.token("classroom", lesson, name="教学点", school="村小")
    page = open_page(node.page_url("class", lesson, token), tv_browser)
    wait_until(lambda: decoding(page, 0, 20), 15, "the TV never decoded the teacher")
    return page


def test_tv_says_sound_only_then_recovers_when_the_teachers_video_stops(
        node: ServerProcess, tv_browser: Any, open_page: Any) -> None:
    lesson = "honest-video"
    with HoldingTeacher(node.base_url, node.token("teacher", lesson, name="王老师")) as teacher:
        page = open_tv(node, lesson, tv_browser, open_page)
        sockets = len(page.sockets)
        teacher.video.clear()  # the camera stops; the sound goes on
        stopped = time.monotonic()
        said = wait_until(lambda: (s := tv_state(page))["status"] == SOUND_ONLY and s, 10,
                          "the TV never said 'sound only'", 0.2)
        after = time.monotonic() - stopped
        print(f"'sound only' shown {after:.2f} s after the teacher's video stopped")
        # target 5 s + one 1 s reading; a CI box loaded by Chromium and the server adds up to
        # a reading or two (7.0 s seen once under load)
        assert after <= 8.0, f"the notice took {after:.2f} s (target: 5 s + one reading)"
        assert said["state"] == "no-media" and said["health"] == "sound-only", said
        assert (said["badge"], said["badgeText"]) == ("no-media", "直播中 · 只有声音"), said
        assert len(page.sockets) == sockets, "the socket went down"
        # it subscribes again at once (the connection carried only sound); the sound comes
        # again on the new connection, and "上课中" / "直播中" never come back meanwhile
        after_notice: list[dict[str, Any]] = []
        mark: dict[str, Any] = {}

        def resubscribed_with_sound() -> bool:
            now = tv_state(page)
            after_notice.append(now)
            if "audio" not in mark and now["resubscribes"] >= 1 and now["pc"] == "connected":
                mark["audio"] = now["audio"]  # the new connection is up
            return "audio" in mark and now["audio"] > mark["audio"]

        wait_until(resubscribed_with_sound, 5, "no sound after re-subscribing", 0.2)
        for now in after_notice:
            assert now["status"] in (SOUND_ONLY, NO_PICTURE), now
            assert now["badge"] == "no-media", now
        frames = tv_state(page)["frames"]
        teacher.video.set()
        back = time.monotonic()
        wait_until(lambda: decoding(page, frames), 8, "the TV did not recover")
        print(f"decoding again, notice gone {time.monotonic() - back:.2f} s after the video "
              "came back")
        assert time.monotonic() - back <= 5.5


def test_tv_says_the_teachers_media_stopped_and_recovers_within_5_s(
        node: ServerProcess, tv_browser: Any, open_page: Any) -> None:
    lesson = "honest-all"
    with HoldingTeacher(node.base_url, node.token("teacher", lesson, name="王老师")) as teacher:
        page = open_tv(node, lesson, tv_browser, open_page)
        sockets = len(page.sockets)
        teacher.video.clear()
        teacher.sound.clear()  # nothing at all: the relay says so after its 2 s
        stopped = time.monotonic()
        said = wait_until(lambda: (s := tv_state(page))["detail"] == TEACHER_STOPPED and s, 6,
                          "the TV never said the teacher's media stopped", 0.2)
        print(f"'teacher stopped' shown {time.monotonic() - stopped:.2f} s after it stopped")
        assert said["status"] == LIVE and said["state"] == "no-media", said
        assert (said["badge"], said["badgeText"]) == ("no-media", "直播中 · 没有画面"), said
        assert said["pc"] == "connected" and len(page.sockets) == sockets, said

        frames = said["frames"]
        teacher.video.set()
        teacher.sound.set()
        back = time.monotonic()
        wait_until(lambda: decoding(page, frames), 8, "the TV did not recover")
        took = time.monotonic() - back
        print(f"decoding again {took:.2f} s after the teacher's media came back")
        assert took <= 5.0
        assert stats(page)["connectionState"] == "connected"
