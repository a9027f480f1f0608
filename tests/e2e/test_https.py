"""https and secure contexts in Chromium, at this machine's LAN address (issue 12 item 2).

* Plain http at the LAN address is not a secure context: the teacher console says it needs
  https (both languages), start asks first (start-anyway, receive only), and a classroom
  says why its camera is off but still receives the teacher.
* ``classroom serve --tls-cert/--tls-key``: the teacher's camera opens over https, the
  lesson starts, a classroom receives over wss + WebRTC; a certificate swapped on disk and
  SIGHUP: new connections get it, the open sockets and media keep going; a broken file and
  SIGHUP keep the old certificate.

The module's browser accepts the tests' self-signed certificates and has Chromium's mDNS
hiding of host addresses off: a page with no camera permission (the insecure classroom)
would otherwise offer only ``.local`` candidates, which another engineer's relay fix
handles; these tests must not depend on it.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.links import lan_address
from tests.e2e.conftest import AUTOPLAY_ALLOWED, BASE_ARGS, ServerProcess
from tests.e2e.pages import (
    CHROMIUM,
    LIVE,
    press,
    stats,
    wait_media_rising,
    wait_stat_above,
    wait_until,
)
from tests.tls_certs import insecure_client_context, make_cert, served_common_name

LAN = lan_address()
pytestmark = pytest.mark.skipif(LAN is None, reason="this machine has no non-loopback IPv4 "
                                                    "address to open the pages at")

# fake camera (BASE_ARGS), self-signed certificates accepted, host addresses not hidden
HTTPS_ARGS = BASE_ARGS + [AUTOPLAY_ALLOWED, "--ignore-certificate-errors",
                          "--disable-features=WebRtcHideLocalIpsWithMdns"]


@pytest.fixture(scope="module")
def browser(playwright_instance: Any) -> Iterator[Any]:
    """This module's Chromium (overrides conftest's): see HTTPS_ARGS."""
    launched = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=HTTPS_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def https_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start ``classroom serve`` on 0.0.0.0 (over TLS with ``tls=True``); stopped at teardown.

    A test asks for this before ``open_page``, so its pages are closed first: a server
    stopped while a page's socket is open waits ~10 s for it before it exits (SIGTERM,
    measured), which is not what these tests are about."""
    started: list[ServerProcess] = []

    def start(extra: list[str], tls: bool = False) -> ServerProcess:
        srv = ServerProcess(extra, Path(tempfile.mkdtemp(prefix="classroom-https-")))
        srv.host = "0.0.0.0"
        if tls:
            srv.base_url = f"https://127.0.0.1:{srv.port}"
            srv.health_ssl = insecure_client_context()
        started.append(srv)
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.stop()


def _note(page: Any) -> str:
    return page.locator("#uplink-note").inner_text().strip()


def test_plain_http_at_lan_address_says_https_is_needed(https_server: Callable[..., Any],
                                                         open_page: Any) -> None:
    srv = https_server([])
    lan_base = f"http://{LAN}:{srv.port}"
    teacher = open_page(f"{lan_base}/teach/insecure#token={srv.token('teacher', 'insecure')}")
    assert teacher.evaluate("() => window.isSecureContext") is False
    wait_until(lambda: "需要通过 https 打开本页面" in teacher.locator("#status").inner_text(),
               15, "the teacher console did not say it needs https")
    english = open_page(f"{lan_base}/teach/insecure?lang=en"
                        f"#token={srv.token('teacher', 'insecure')}")
    wait_until(lambda: "needs https" in english.locator("#status").inner_text(), 15,
               "the English console did not say it needs https")
    english.context.close()

    # start with no camera: first a plain explanation, the lesson is not started
    press(teacher, "start-lesson")
    warning = teacher.locator("[data-start-warning]")
    wait_until(warning.is_visible, 5, "no notice when starting without a camera")
    text = warning.inner_text()
    assert "本页面不是通过 https 打开的" in text and "各课堂看不到也听不到您" in text, text
    assert stats(teacher)["lessonState"] == "waiting"
    press(teacher, "start-anyway")
    wait_until(lambda: stats(teacher)["lessonState"] == "live", 10,
               "start-anyway did not start the lesson")
    assert not warning.is_visible()

    # a classroom at the LAN address over http: says why its camera is off, still receives
    # (the teacher on 127.0.0.1, a secure context, publishes)
    lesson = "insecure-room"
    teach_local = open_page(srv.page_url("teach", lesson, srv.token("teacher", lesson)))
    wait_stat_above(teach_local, "framesEncoded", 0, 20)
    press(teach_local, "start-lesson")
    room = open_page(f"{lan_base}/class/{lesson}"
                     f"#token={srv.token('classroom', lesson, name='教学点B')}")
    wait_until(lambda: room.locator("#status").inner_text().strip() == LIVE, 20,
               "the insecure classroom did not join the live lesson")
    wait_until(lambda: "需要通过 https 打开本页面" in _note(room), 10,
               "the classroom did not say why its camera is off")
    assert room.locator("#uplink-note").get_attribute("data-state") == "unavailable"
    wait_media_rising(room, timeout=20)


def test_https_lesson_and_certificate_reload(https_server: Callable[..., Any], open_page: Any,
                                             tmp_path: Path) -> None:
    cert_a, key_a = make_cert(tmp_path, "cert-a", [LAN, "127.0.0.1"])
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    os.replace(cert_a, live_cert)
    os.replace(key_a, live_key)
    srv = https_server(["--tls-cert", str(live_cert), "--tls-key", str(live_key)], tls=True)
    base = f"https://{LAN}:{srv.port}"
    assert served_common_name(LAN, srv.port) == "cert-a"
    lesson = "secure"
    teacher = open_page(f"{base}/teach/{lesson}#token={srv.token('teacher', lesson)}")
    assert teacher.evaluate("() => window.isSecureContext") is True
    wait_stat_above(teacher, "framesEncoded", 0, 20)  # the camera opened and publishes
    press(teacher, "start-lesson")
    wait_until(lambda: stats(teacher)["lessonState"] == "live", 10, "lesson did not start")
    assert not teacher.locator("[data-start-warning]").is_visible()

    room = open_page(f"{base}/class/{lesson}"
                     f"#token={srv.token('classroom', lesson, name='一年级1班')}")
    wait_media_rising(room, timeout=20)
    assert room.sockets and all(u.startswith("wss://") for u in room.sockets), room.sockets
    assert "https" not in _note(room)
    sockets = (len(teacher.sockets), len(room.sockets))

    # a renewed certificate on disk, then SIGHUP: new handshakes get it
    cert_b, key_b = make_cert(tmp_path, "cert-b", [LAN, "127.0.0.1"])
    os.replace(cert_b, live_cert)
    os.replace(key_b, live_key)
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_until(lambda: served_common_name(LAN, srv.port) == "cert-b", 10,
               "new connections did not get the new certificate")
    # ... and the lesson went on: media still flows on the same sockets and connections
    wait_media_rising(room, timeout=10)
    wait_stat_above(teacher, "framesEncoded", stats(teacher)["framesEncoded"], 10)
    assert (len(teacher.sockets), len(room.sockets)) == sockets, "a socket reconnected"
    assert stats(room)["connectionState"] == "connected"

    # a broken file and SIGHUP: logged, the old certificate stays
    live_cert.write_text("not a certificate\n")
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_until(lambda: "TLS reload failed" in srv.log_tail(20), 10,
               "the failed reload was not logged")
    assert served_common_name(LAN, srv.port) == "cert-b"
    wait_media_rising(room, timeout=10)
