"""A classroom page follows a placement ``redirect`` (issue 14, item 4; docs/cascade.md).

Two ``classroom serve`` processes on one redis-server: A ``--max-subscribers 0`` (every
classroom that asks A is sent on while another node has room), B free. The teacher (the
headless client) publishes to A; a classroom TV page (Chromium, no camera) opened on A is
redirected at hello, opens its socket on B (the page stays on A: its CSP lists B's
socket), and decodes there what A encodes. The token never appears in a URL.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, district_nodes
from tests.e2e.pages import missing_browser_reason, wait_media_rising, wait_until
from tests.e2e.test_no_camera import HeadlessTeacher

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(90)]

LESSON = "placed-1"


@pytest.fixture
def nodes(redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with district_nodes(redis_url, "classroom-placement-", ["--max-subscribers", "0"]) as both:
        yield both


def _get(url: str) -> tuple[str, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.read().decode(), dict(resp.headers)


def test_classroom_page_follows_a_redirect_and_decodes_on_the_other_node(
        nodes: tuple[ServerProcess, ServerProcess], tv_browser: Any, open_page: Any) -> None:
    a, b = nodes
    a_ws, b_ws = (s.base_url.replace("http", "ws", 1) + "/ws" for s in (a, b))
    # A's pages may open B's socket once A has read B's node record (every 2 s)
    wait_until(lambda: b_ws[:-3] in _get(a.page_url("class", LESSON, None))[1][
        "Content-Security-Policy"], 10, "A's CSP never named B's socket", 0.2)
    token = a.token("classroom", LESSON, name="教学点", school="村小")
    with HeadlessTeacher(a.base_url, a.token("teacher", LESSON, name="城区老师")):
        page = open_page(a.page_url("class", LESSON, token), tv_browser)
        opened = time.monotonic()
        wait_media_rising(page, timeout=20)
        print(f"redirected page decoding on B {time.monotonic() - opened:.2f} s after "
              "opening on A")
        assert page.url.startswith(a.base_url + "/class/")  # the page itself stayed on A
        now = page.evaluate("import('/static/protocol.js').then((m) => m.socketUrl())")
        assert now == b_ws, now
        assert page.sockets[:2] == [a_ws, b_ws], page.sockets
        assert all(token not in url for url in page.sockets + page.requests)
    metrics_a, _ = _get(a.base_url + "/metrics")
    assert 'classroom_redirects_total{reason="subscribers"} 1.0' in metrics_a
