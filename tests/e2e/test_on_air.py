"""On air (docs/media.md): a classroom TV joined before "开始上课" gets no media at all (the
relay gates it), gets video and sound once the teacher starts, none after the end; both
pages show the on-air badge (teacher in English here, TV in Chinese)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.pages import (
    ENDED,
    missing_browser_reason,
    press,
    stats,
    wait_media_rising,
    wait_status,
    wait_until,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def on_air_server() -> Iterator[ServerProcess]:
    srv = ServerProcess([], Path(tempfile.mkdtemp(prefix="classroom-onair-")))
    srv.start()
    yield srv
    srv.stop()


def badge(page: Any) -> tuple[str | None, str]:
    loc = page.locator("#on-air")
    if not loc.is_visible():
        return None, ""
    return loc.get_attribute("data-state"), loc.inner_text().strip()


def test_classrooms_get_media_only_while_the_lesson_is_live(on_air_server, open_page):
    srv, lesson = on_air_server, "on-air-1"
    teacher = open_page(srv.page_url(
        "teach", lesson, srv.token("teacher", lesson, name="王老师", school="城区一小"),
        "?res=360&lang=en"))
    room = open_page(srv.page_url(
        "class", lesson, srv.token("classroom", lesson, name="教学点A", school="山村小学")))

    # both connected to the relay, the teacher publishing: the classroom gets nothing
    wait_until(lambda: stats(teacher)["connectionState"] == "connected", 30,
               "the teacher's publish never connected")
    wait_until(lambda: stats(room)["connectionState"] == "connected", 30,
               "the classroom's media never connected before the start")
    wait_until(lambda: badge(teacher) == ("waiting", "Not started — only you see this"), 10,
               "teacher badge before the start")
    wait_until(lambda: badge(room) == ("waiting", "等待老师开始上课"), 10,
               "TV badge before the start")
    # 1.5 s connected and not on air: ungated, frames (30 fps) and audio would show at once
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        now = stats(room)
        assert now["lessonState"] == "waiting"
        assert now["framesDecoded"] == 0 and now["audioBytesReceived"] == 0, now
        time.sleep(0.5)

    press(teacher, "start-lesson")
    live = wait_media_rising(room, timeout=30, frames=15)
    assert live["lessonState"] == "live" and live["framesDecoded"] > 0
    wait_until(lambda: badge(teacher) == ("live", "On air"), 10, "teacher badge on air")
    wait_until(lambda: badge(room) == ("live", "直播中"), 10, "TV badge on air")

    press(teacher, "end-lesson")
    wait_status(room, ENDED)
    wait_until(lambda: badge(room) == ("ended", "本节课已结束"), 10, "TV badge after the end")
    assert badge(teacher)[0] == "ended"
    time.sleep(0.5)  # what was in flight lands
    ended = stats(room)
    time.sleep(1.5)
    after = stats(room)
    assert (after["framesDecoded"], after["audioBytesReceived"]) == (
        ended["framesDecoded"], ended["audioBytesReceived"]), (ended, after)
