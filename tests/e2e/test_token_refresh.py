"""A TV left alone outlives the token in its link (issue 18 item 2).

The server closes a socket whose token expired (``token_expired``) unless the page renewed
it: ``welcome``/``refreshed`` hand the page a short-lived ``session_token`` and the page
sends ``refresh`` with it at half its life (protocol.js ``Signal``). Here the link's token
lives 8 s and session tokens 6 s: 25 s later the same socket is still open (one hello,
no reconnect), it renewed itself several times, and the teacher's media keeps arriving.
"""

from __future__ import annotations

import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.pages import missing_browser_reason, stats, wait_media_rising, wait_until
from tests.e2e.test_no_camera import HeadlessTeacher

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LINK_TTL = 8
SESSION_TTL = 6


def _metric(srv: ServerProcess, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(srv.base_url + "/metrics", timeout=5).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(part in m.group(1) for part in want.split(",")):
            total += float(m.group(2))
    return total


@pytest.fixture
def short_lived_server() -> Iterator[ServerProcess]:
    srv = ServerProcess(["--session-token-ttl", str(SESSION_TTL)],
                        Path(tempfile.mkdtemp(prefix="classroom-refresh-")))
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.long  # 21 s of token lifetimes; tests/signaling/test_token_lifetime.py: refresh
def test_a_tv_renews_its_session_past_its_links_expiry(short_lived_server, open_page):
    srv = short_lived_server
    teacher_token = srv.token("teacher", "refresh-1", name="王老师")
    with HeadlessTeacher(srv.base_url, teacher_token):
        hellos_before = _metric(srv, "classroom_signaling_messages_total", type="hello")
        token = srv.token("classroom", "refresh-1", name="教学点电视", school="山村小学",
                          ttl=LINK_TTL)
        expires = time.time() + LINK_TTL
        page = open_page(srv.page_url("class", "refresh-1", token))
        wait_media_rising(page, timeout=20)
        # well past the link token's exp, and several session-token lives later
        # (refresh at half of each 6 s life)
        wait_until(
            lambda: time.time() > expires + 2 * SESSION_TTL and _metric(
                srv, "classroom_signaling_messages_total", type="refresh") >= 4 and _metric(
                srv, "classroom_signaling_messages_total", type="refresh"),
            LINK_TTL + 4 * SESSION_TTL + 10, "the page did not keep renewing its session",
            interval=0.5)
        hellos = _metric(srv, "classroom_signaling_messages_total", type="hello") - hellos_before
        expired = _metric(srv, "classroom_signaling_errors_total", code="token_expired")
        assert hellos == 1, f"the page reconnected ({hellos} hellos): {srv.log_tail()}"
        assert expired == 0, srv.log_tail()
        before = stats(page)
        after = wait_media_rising(page, timeout=10, frames=10)
        assert after["connectionState"] == "connected"
        assert after["framesDecoded"] > before["framesDecoded"]
