"""A live lesson in real browsers: a teacher console and classroom TV views through the
real server (a subprocess), with Chromium's fake camera and microphone."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import BLOCK_UNMUTED_PLAY, BOTH_STORES
from tests.e2e.pages import (
    ENDED,
    LIVE,
    RECONNECTING,
    WAITING,
    missing_browser_reason,
    press,
    stats,
    status,
    wait_media_rising,
    wait_status,
    wait_until,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def open_teacher(server, open_page, lesson):
    token = server.token("teacher", lesson, name="王老师", school="城区一小")
    # 640x360 keeps two cores free enough for the relay and three pages
    return open_page(server.page_url("teach", lesson, token, "?res=360")), token


def open_classroom(server, open_page, lesson, name, browser=None, init_script=None):
    token = server.token("classroom", lesson, name=name, school="山村小学")
    return open_page(server.page_url("class", lesson, token), browser, init_script), token


def test_teacher_and_two_classrooms_see_and_hear_the_lesson(server, open_page):
    lesson = "e2e-live"
    teacher, teacher_token = open_teacher(server, open_page, lesson)
    rooms = [open_classroom(server, open_page, lesson, name) for name in ("一年级1班", "教学点A")]
    for room, _ in rooms:
        wait_status(room, WAITING)

    press(teacher, "start-lesson")
    for room, _ in rooms:
        now = wait_media_rising(room, timeout=40)
        assert now["lessonState"] == "live"
        assert now["connectionState"] == "connected"
        assert now["videoTier"] == "high"
        assert status(room) == LIVE
        # autoplay is allowed in this browser: nobody has to press anything
        assert not room.locator('[data-action="join"]').is_visible()

    # the roster shows both classrooms with their media connected
    connected = teacher.locator('#roster-body tr[data-media-state="connected"]')
    wait_until(lambda: connected.count() == 2, 20, "teacher roster never showed 2 connected")
    names = teacher.locator("#roster-body td.name").all_inner_texts()
    assert sorted(names) == sorted(["一年级1班", "教学点A"])
    assert stats(teacher)["lessonState"] == "live"

    # a raised hand shows on the teacher console, and goes away when lowered
    room, _ = rooms[0]
    row = teacher.locator("#roster-body tr", has_text="一年级1班")
    press(room, "raise-hand")
    wait_until(lambda: row.get_attribute("data-hand") == "true", 10, "hand not shown to teacher")
    press(room, "lower-hand")
    wait_until(lambda: row.get_attribute("data-hand") == "false", 10, "hand not lowered")
    wait_until(
        lambda: room.locator('[data-action="raise-hand"]').is_visible(),
        10,
        "raise-hand button not back",
    )

    # the token travelled in the fragment only: no request line or socket URL carries it
    for page, token in [(teacher, teacher_token), *rooms]:
        for url in page.requests + page.sockets:
            assert token not in url, f"token leaked into {url}"
            assert url.startswith((server.base_url, "ws://127.0.0.1", "data:", "blob:")), url

    # ending the lesson: every classroom says so and stops its media for good
    press(teacher, "end-lesson")
    for room, _ in rooms:
        wait_status(room, ENDED)
        wait_until(
            lambda r=room: stats(r)["connectionState"] == "new",
            10,
            "media not torn down after the lesson ended",
        )
        assert stats(room)["lessonState"] == "ended"
    frames_at_end = stats(rooms[0][0])["framesDecoded"]
    # no media reconnect attempts while ended: longer than the first two retry delays of
    # the page's media link (0.5 + 1 s)
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        assert stats(rooms[0][0])["connectionState"] == "new"
        time.sleep(0.5)

    # the sockets stayed: a restarted lesson resumes without touching the classrooms
    press(teacher, "start-lesson")
    for room, _ in rooms:
        wait_status(room, LIVE)
        wait_media_rising(room, timeout=40)
    assert stats(rooms[0][0])["framesDecoded"] > frames_at_end


@BOTH_STORES
def test_classroom_recovers_after_server_restart_without_a_click(server, open_page):
    lesson = "e2e-restart"
    teacher, _ = open_teacher(server, open_page, lesson)
    room, _ = open_classroom(server, open_page, lesson, "一年级2班")
    press(teacher, "start-lesson")
    wait_media_rising(room, timeout=40)
    before = stats(room)

    server.kill()
    wait_status(room, RECONNECTING, timeout=15)
    assert stats(room)["framesDecoded"] >= before["framesDecoded"], "totals went backwards"

    server.start()
    # The in-memory store forgot the lesson with the process. The teacher's console comes
    # back by itself too; if the lesson restarted as "waiting", the teacher starts it again
    # (the classroom is never touched).
    start = teacher.locator('[data-action="start-lesson"]')
    end = teacher.locator('[data-action="end-lesson"]')
    wait_until(
        lambda: start.is_enabled() or end.is_enabled(), 30, "teacher console did not reconnect"
    )
    if stats(teacher)["lessonState"] != "live":
        press(teacher, "start-lesson")

    after = wait_media_rising(room, timeout=60)
    assert after["framesDecoded"] > before["framesDecoded"]
    assert after["lessonState"] == "live"
    assert after["connectionState"] == "connected"
    assert status(room) == LIVE
    assert len(room.sockets) >= 2, "the page should have opened a new socket"


def test_join_button_when_the_browser_blocks_autoplay(server, open_page, launch_browser):
    lesson = "e2e-autoplay"
    strict = launch_browser(autoplay=False)
    teacher, _ = open_teacher(server, open_page, lesson)
    room, _ = open_classroom(server, open_page, lesson, "教学点B", browser=strict,
                             init_script=BLOCK_UNMUTED_PLAY)
    press(teacher, "start-lesson")

    join = room.locator('[data-action="join"]')
    video = room.locator("#teacher-video")
    state = (
        "() => { const v = document.querySelector('video');"
        " return {paused: v.paused, muted: v.muted, readyState: v.readyState,"
        " activated: navigator.userActivation.hasBeenActive}; }"
    )
    try:
        wait_until(join.is_visible, 40, "join button never appeared although autoplay is blocked")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; video {room.evaluate(state)}; stats {stats(room)}") from None
    # meanwhile the picture plays muted, so the TV is not black
    assert video.evaluate("v => v.muted") is True

    join.click()
    wait_until(lambda: not join.is_visible(), 10, "join button stayed after pressing it")
    wait_until(
        lambda: video.evaluate("v => !v.paused && !v.muted"),
        10,
        "video not playing with sound after join",
    )
    now = wait_media_rising(room, timeout=30)
    assert now["lessonState"] == "live"
    assert status(room) == LIVE


def test_low_bandwidth_button_moves_the_classroom_to_low(server, open_page):
    lesson = "e2e-lowbw"
    teacher, _ = open_teacher(server, open_page, lesson)
    room, _ = open_classroom(server, open_page, lesson, "教学点B")
    press(teacher, "start-lesson")
    assert wait_media_rising(room, timeout=40)["videoTier"] == "high"
    press(room, "low-bandwidth")
    wait_until(lambda: stats(room)["videoTier"] == "low", 15, "videoTier never became low")
    assert room.locator('[data-action="low-bandwidth"]').get_attribute("aria-pressed") == "true"
    # the picture shrinks to the low tier's 320x180 on the same video element
    wait_until(lambda: room.evaluate("() => document.querySelector('video').videoWidth") == 320,
               15, "video never shrank to 320 wide")
    wait_media_rising(room, timeout=20)
    assert not room.locator("#audio-only").is_visible()
    # the teacher console shows the classroom's tier in its roster
    row = teacher.locator("#roster-body tr", has_text="教学点B")
    wait_until(lambda: row.get_attribute("data-tier") == "low", 15, "teacher never saw low")
    press(room, "low-bandwidth")
    assert room.locator('[data-action="low-bandwidth"]').get_attribute("aria-pressed") == "false"
