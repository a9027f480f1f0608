"""The two-way lesson across two `classroom serve` nodes on one Redis, in real browsers: the
teacher's console on node A, one classroom page on A and one on B (Chromium's fake camera).

The teacher's grid on A decodes the uplink of the classroom whose socket reached B (it goes
up the lesson's cascade link, media_relay/cascade_uplinks.py), and calling that classroom
on stage makes the classroom on A decode it (the stage is made at the origin, A).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ServerProcess, district_nodes
from tests.e2e.pages import (
    LIVE,
    missing_browser_reason,
    press,
    stats,
    tile_of,
    wait_stat_above,
    wait_status,
    wait_until,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(150)]

LESSON = "cascade-two-way"


@pytest.fixture
def nodes(redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with district_nodes(redis_url, "classroom-cascade-2way-", ["--no-recording"],
                        ["--no-recording"]) as both:
        yield both


def _tile_frames(teacher, peer: str) -> int:
    tile = stats(teacher)["tiles"].get(peer) or {}
    return int(tile.get("framesDecoded", 0))


def test_teacher_on_a_sees_and_stages_a_classroom_on_b(nodes, open_page) -> None:
    a, b = nodes
    teacher = open_page(a.page_url("teach", LESSON, a.token("teacher", LESSON, name="王老师"),
                                   "?res=360"))
    near = open_page(a.page_url("class", LESSON, a.token("classroom", LESSON, name="城区班")))
    far = open_page(b.page_url("class", LESSON, b.token("classroom", LESSON, name="村小班")))
    press(teacher, "start-lesson")
    for page in (near, far):
        wait_status(page, LIVE, timeout=30)
    far_peer = tile_of(teacher, "村小班", timeout=30)
    wait_until(lambda: stats(far)["uplinkState"] == "connected", 30, "B's uplink never up")
    wait_until(lambda: _tile_frames(teacher, far_peer) > 15, 40,
               "the teacher's tile of the classroom on B decodes no frames")
    tile = teacher.locator(f'[data-tile="{far_peer}"]')
    assert tile.locator("video").evaluate("v => v.videoWidth") > 0

    before = stats(near)["stageFramesDecoded"]
    tile.locator('[data-action="call-on-stage"]').click()
    wait_stat_above(near, "stageFramesDecoded", before + 15, timeout=30)
    wait_stat_above(near, "stageAudioBytesReceived", 0, timeout=20)
