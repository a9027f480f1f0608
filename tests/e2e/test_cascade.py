"""One lesson on two `classroom serve` processes on one Redis (issue 14): the teacher on
node A, a classroom TV (Chromium, no camera) on node B, decoding what A encodes.

Before the cascade B's page said ``connected`` and decoded 0 frames. Now B pulls the
lesson's lines from its origin (signaling/cascade.py). The test then kills B (SIGKILL)
and starts it again: the page reconnects by itself and decodes again; then it kills A, the
origin: the teacher comes back on B, which becomes the lesson's origin, and the classroom
decodes again. The times are printed (docs/cascade.md quotes them).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, district_nodes
from tests.e2e.pages import (
    missing_browser_reason,
    risen_at,
    stats,
    wait_media_rising,
    wait_until,
    watch_rise,
)
from tests.e2e.test_no_camera import HeadlessTeacher

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(150)]

LESSON = "cascade-1"


class RejoiningTeacher(HeadlessTeacher):
    """The headless teacher coming back to a lesson already live (no second start)."""

    starts_lesson = False


@pytest.fixture
def nodes(redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with district_nodes(redis_url, "classroom-cascade-") as both:
        yield both


def origin_is(srv: ServerProcess, lesson: str) -> bool:
    """``GET /api/nodes`` on ``srv`` names ``srv`` itself as the lesson's origin."""
    req = urllib.request.Request(srv.base_url + "/api/nodes", headers={
        "Authorization": "Bearer " + srv.token("admin", "*")})
    with urllib.request.urlopen(req, timeout=3) as resp:
        body = json.load(resp)
    me = [n["id"] for n in body["nodes"] if n["http_url"].endswith(f":{srv.port}")]
    return bool(me) and body["origins"].get(lesson) == me[0]


def test_classroom_on_another_node_survives_edge_and_origin_deaths(
        nodes: tuple[ServerProcess, ServerProcess], tv_browser: Any, open_page: Any) -> None:
    a, b = nodes
    teacher = HeadlessTeacher(a.base_url, a.token("teacher", LESSON, name="城区老师"))
    with teacher:
        page = open_page(b.page_url("class", LESSON, b.token("classroom", LESSON,
                                                              name="教学点", school="村小")),
                         tv_browser)
        opened = time.monotonic()
        wait_media_rising(page, timeout=20)
        print(f"edge classroom decoding {time.monotonic() - opened:.2f} s after opening")
        assert stats(page)["connectionState"] == "connected"

        b.kill()  # the edge dies; the page reconnects (to A, which B's welcome named, or
        b.start()  # to B when it is back)
        back = time.monotonic()
        wait_media_rising(page, timeout=30, frames=20)
        print(f"edge restarted: media again {time.monotonic() - back:.2f} s after it was up")
    a.kill()  # the origin dies with the teacher's connection
    rejoin = RejoiningTeacher(b.base_url, b.token("teacher", LESSON, name="城区老师"))
    with rejoin:
        # the teacher's media is back (its publish connected): the TV's first new frame,
        # timed in the page (Date.now(), the same clock as time.time() on this machine)
        returned = time.time()
        watch_rise(page, "framesDecoded", stats(page)["framesDecoded"])
        again = risen_at(page, "framesDecoded", 20) / 1000 - returned
        print(f"origin moved: media again {again:.2f} s after the teacher's media returned")
        wait_media_rising(page, timeout=10, frames=20)
        assert again <= 5.0, f"media again {again:.2f} s after the teacher's media returned"
        # B takes the origin over once A's record lapses (TTL 6 s)
        wait_until(lambda: origin_is(b, LESSON), 15, "B never became the origin", 0.5)


def test_a_classroom_whose_node_dies_for_good_goes_to_another(
        nodes: tuple[ServerProcess, ServerProcess], tv_browser: Any, open_page: Any) -> None:
    """An edge that dies and stays down: its page opens its socket at another node its
    welcome named (``fallback_sockets``) and decodes there within 5 s (issue 14, item 4)."""
    a, b = nodes
    a_socket = a.base_url.replace("http", "ws", 1) + "/ws"
    teacher = HeadlessTeacher(a.base_url, a.token("teacher", LESSON, name="城区老师"))
    with teacher:
        wait_until(lambda: a_socket.rsplit("/", 1)[0] in csp(b), 15,
                   "B never read A's node record", 0.2)  # then B's welcome names A
        page = open_page(b.page_url("class", LESSON, b.token("classroom", LESSON,
                                                              name="教学点", school="村小")),
                         tv_browser)
        wait_media_rising(page, timeout=20)
        socket = "import('/static/protocol.js').then((m) => m.socketUrl())"
        assert page.evaluate(socket).startswith(b.base_url.replace("http", "ws", 1))
        b.kill()
        killed = time.time()
        wait_until(lambda: page.evaluate(socket) == a_socket, 10,
                   "the page never opened its socket at A", 0.1)
        moved = time.time() - killed
        watch_rise(page, "framesDecoded", stats(page)["framesDecoded"])
        again = risen_at(page, "framesDecoded", 20) / 1000 - killed
        print(f"edge gone for good: socket at A {moved:.2f} s, media again {again:.2f} s "
              "after the kill")
        assert again <= 5.0, f"media again {again:.2f} s after the node died"
        wait_media_rising(page, timeout=10, frames=20)
        assert stats(page)["connectionState"] == "connected"


def csp(srv: ServerProcess) -> str:
    """The Content-Security-Policy of a classroom page on ``srv`` (other nodes' sockets)."""
    with urllib.request.urlopen(srv.base_url + f"/class/{LESSON}", timeout=3) as resp:
        return resp.headers.get("Content-Security-Policy", "")
