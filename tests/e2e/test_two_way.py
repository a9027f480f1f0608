"""A two-way lesson (issue 7) in real browsers: one teacher console and three classroom TV
pages through the real server, Chromium's fake camera, microphone and screen.

The teacher's grid decodes every classroom's uplink; a hand raised in one classroom shows in
the teacher's hand queue; calling it on stage makes the two other classrooms decode its
video and receive its audio (the delay from the click to the first decoded stage frame is
measured and printed; target < 1 s); the teacher's screen share reaches every classroom.

The store backend is memory by default (``CLASSROOM_E2E_TWO_WAY_BACKENDS=memory,redis``
adds Redis); the whole file takes about a minute on a quiet 2-core machine.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.e2e.pages import (
    LIVE,
    REMOVED,
    missing_browser_reason,
    press,
    risen_at,
    stats,
    tile_of,
    wait_stat_above,
    wait_status,
    wait_until,
    watch_rise,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Headless Chromium gives getDisplayMedia a fake screen with the flags of conftest.py
# (--use-fake-device-for-media-stream + --use-fake-ui-for-media-stream): no test hook needed.
ROOMS = ("一年级1班", "教学点A", "教学点B")
STAGE_TARGET_S = 1.0  # the target, printed
STAGE_LIMIT_S = 5.0  # asserted: a loaded shared machine must still stay well inside this


def _two_way_backends() -> list[str]:
    names = os.environ.get("CLASSROOM_E2E_TWO_WAY_BACKENDS", "memory")
    return [n.strip() for n in names.split(",") if n.strip()]


@pytest.fixture(params=_two_way_backends())
def server_backend(request: pytest.FixtureRequest) -> list[str]:
    """This module runs on the memory store unless told otherwise (time budget). No
    recording: its top-tier encode is CPU the relay's own stage/share work needs here."""
    if request.param == "memory":
        return ["--no-recording"]
    if request.param == "redis":
        return ["--no-recording", "--redis-url", request.getfixturevalue("redis_url")]
    raise ValueError(f"unknown e2e backend {request.param!r}")


def _tile_frames(teacher, peer: str) -> int:
    tile = stats(teacher)["tiles"].get(peer) or {}
    return int(tile.get("framesDecoded", 0))


def test_grid_hand_stage_and_share(server, open_page):
    lesson = "e2e-two-way"
    t_token = server.token("teacher", lesson, name="王老师", school="城区一小")
    teacher = open_page(server.page_url("teach", lesson, t_token, "?res=360"))
    rooms = {}
    for name in ROOMS:
        token = server.token("classroom", lesson, name=name, school="山村小学")
        rooms[name] = open_page(server.page_url("class", lesson, token))
    press(teacher, "start-lesson")
    for page in rooms.values():
        wait_status(page, LIVE, timeout=30)

    # -- the grid: one tile per classroom, each decoding that classroom's uplink
    peers = {name: tile_of(teacher, name, timeout=30) for name in ROOMS}
    assert len(set(peers.values())) == 3
    for name, page in rooms.items():
        wait_until(lambda p=page: stats(p)["uplinkState"] == "connected", 30,
                   f"{name}: uplink never connected")
    for name, peer in peers.items():
        wait_until(lambda p=peer: _tile_frames(teacher, p) > 15, 40,
                   f"teacher's tile of {name} decodes no frames")
    grid = stats(teacher)
    assert grid["gridState"] == "connected"
    slots = {grid["tiles"][p]["slot"] for p in peers.values()}
    assert len(slots) == 3 and -1 not in slots, f"tiles not on distinct slots: {grid['tiles']}"
    for peer in peers.values():
        tile = teacher.locator(f'[data-tile="{peer}"]')
        assert tile.get_attribute("data-hand") == "false"
        wait_until(lambda t=tile: t.get_attribute("data-state") == "active", 20,
                   "tile state never became active")
        # the tile's picture really plays (not a black box)
        assert tile.locator("video").evaluate("v => v.videoWidth") > 0

    # -- a hand raised in one classroom shows in the teacher's queue and on its tile
    caller, others = ROOMS[0], ROOMS[1:]
    star = peers[caller]
    press(rooms[caller], "raise-hand")
    queue = teacher.locator(f'[data-hand-queue] [data-hand-item="{star}"]')
    wait_until(lambda: queue.count() == 1, 10, "raised hand not in the teacher's queue")
    assert caller in queue.inner_text()
    assert teacher.locator(f'[data-tile="{star}"]').get_attribute("data-hand") == "true"

    # -- call it on stage: the two others decode its video and receive its audio
    before = {name: stats(rooms[name]) for name in others}
    for name in others:
        watch_rise(rooms[name], "stageFramesDecoded", before[name]["stageFramesDecoded"])
    # the click's own time, taken in the page (Date.now(): one clock for every page here)
    teacher.evaluate(
        "() => document.addEventListener('click', (e) => {"
        " if (e.target.closest('[data-action=\"call-on-stage\"]')) window.__clickAt = Date.now();"
        " }, true)")
    queue.locator('[data-action="call-on-stage"]').click()
    clicked_at = teacher.evaluate("() => window.__clickAt")
    delays, told = {}, {}
    for name in others:
        delays[name] = (risen_at(rooms[name], "stageFramesDecoded", 20) - clicked_at) / 1000
        told[name] = (stats(rooms[name])["stageChangedAt"] - clicked_at) / 1000
    print("\nstage: click -> first decoded stage frame: "
          + ", ".join(f"{n} {d:.3f} s (stage event after {told[n]:.3f} s)"
                      for n, d in delays.items())
          + f" (target < {STAGE_TARGET_S:.0f} s)")
    for name in others:
        now = wait_stat_above(rooms[name], "stageAudioBytesReceived",
                              before[name]["stageAudioBytesReceived"] + 2000, timeout=15)
        wait_stat_above(rooms[name], "stageFramesDecoded", now["stageFramesDecoded"] + 20, 20)
        assert rooms[name].locator("#stage-box").is_visible()
    for name, delay in delays.items():
        assert delay < STAGE_LIMIT_S, f"{name}: stage seen after {delay:.2f} s"
    # the caller knows it is on stage; its hand went down; the teacher hears it
    wait_until(lambda: stats(rooms[caller])["onStage"], 10, "caller does not know it is on stage")
    assert rooms[caller].locator("#on-stage").is_visible()
    wait_until(lambda: queue.count() == 0, 10, "the called hand stayed in the queue")
    base_audio = stats(teacher)["stageAudioBytes"]
    wait_stat_above(teacher, "stageAudioBytes", base_audio + 2000, timeout=15)
    assert teacher.locator(f'[data-tile="{star}"]').get_attribute("data-stage") == "true"

    # -- screen share reaches every classroom (slides big, teacher small)
    share_before = {name: stats(page)["shareFramesDecoded"] for name, page in rooms.items()}
    publishes = stats(teacher)["publishes"]
    started = time.monotonic()
    press(teacher, "share-screen")
    wait_until(lambda: stats(teacher)["sharing"], 10, "teacher page is not sharing")
    for name, page in rooms.items():
        # a fake screen is mostly still: a few frames a second after the relay's re-encode
        wait_stat_above(page, "shareFramesDecoded", share_before[name] + 3, timeout=40)
        wait_until(lambda p=page: p.locator("#share-video").is_visible(), 10,
                   f"{name}: share not shown")
        assert page.evaluate("() => document.querySelector('#share-video').videoWidth") > 0
    print(f"share: button -> decoded in all three classrooms {time.monotonic() - started:.2f} s")
    # the screen went onto the publish's share m-line in place: no new publish connection
    assert stats(teacher)["publishes"] == publishes
    # slides big, the teacher small (the camera may be paused by the share's priority on a
    # thin link, so only the layout is checked here)
    for page in rooms.values():
        small = page.evaluate(
            "() => document.querySelector('#teacher-video').getBoundingClientRect().width")
        assert small < 0.5 * 1280, f"teacher not small during the share ({small}px)"
    # stopping takes the screen off the same connection too: the share view goes away
    press(teacher, "share-screen")
    wait_until(lambda: not stats(teacher)["sharing"], 10, "teacher page still sharing")
    for name, page in rooms.items():
        wait_until(lambda p=page: not p.locator("#share-video").is_visible(), 10,
                   f"{name}: share still shown after it stopped")
    assert stats(teacher)["publishes"] == publishes

    # -- the teacher ends the stage turn: every classroom's layout goes back
    teacher.locator(f'[data-tile="{star}"] [data-action="leave-stage"]').click()
    for name in others:
        wait_until(lambda p=rooms[name]: not p.locator("#stage-box").is_visible(), 10,
                   f"{name}: stage still shown after leave-stage")
    wait_until(lambda: not stats(rooms[caller])["onStage"], 10, "caller still on stage")

    # -- controls: the local teacher turns the camera off (shown on the teacher's tile); the
    # teacher mutes that classroom (it is told), then removes it (two presses): it says so
    # and does not come back by itself
    name = others[1]
    room, peer = rooms[name], peers[name]
    tile = teacher.locator(f'[data-tile="{peer}"]')
    press(room, "camera")
    assert room.locator('[data-action="camera"]').get_attribute("aria-pressed") == "true"
    wait_until(lambda: "摄像头关" in tile.inner_text(), 10, "camera-off not on the tile")
    tile.locator('[data-action="mute-classroom"]').click()
    wait_until(lambda: room.locator("#teacher-muted").is_visible(), 10, "mute not shown")
    wait_until(lambda: tile.get_attribute("data-muted") == "true", 10, "tile not muted")
    remove = tile.locator('[data-action="remove-classroom"]')
    remove.click()
    assert remove.get_attribute("data-confirm") == "true"
    remove.click()
    wait_status(room, REMOVED, timeout=10)
    wait_until(lambda: tile.count() == 0, 15, "removed classroom's tile stayed")
    sockets = len(room.sockets)
    # no reconnect after removal: longer than the first two reconnect delays (0.5 + 1 s)
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        assert len(room.sockets) == sockets
        assert stats(room)["uplinkState"] != "connected"
        time.sleep(0.5)
