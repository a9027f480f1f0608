"""Camera-less and camera-denying classrooms receive the lesson (issue 12 item 1).

A Chromium with no camera permission hides its host addresses behind ``<uuid>.local``
names; the relay must learn them from the browser's connectivity checks
(media_relay/mdns.py). Each test opens a classroom in such a Chromium (no fake devices and
no fake permission UI: a TV; or a fake camera whose permission is refused) and requires
its decoded video frames and received audio bytes to rise within 10 s of opening the
page, on 127.0.0.1 and at this machine's non-loopback address with the server bound to
it (there also with ``--rtc-ports``: the browser's selected pair ends on a port of the
range). The pages' own offers are recorded to prove they really held only ``.local`` host
candidates. The teacher is the headless client (aiortc), so no camera prompt is needed
at the LAN address over plain http.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from signaling.links import lan_address
from tests.e2e.conftest import AUTOPLAY_ALLOWED, BASE_ARGS, FAKE_UI, ServerProcess
from tests.e2e.pages import (
    CHROMIUM,
    RECORD_PEER_CONNECTIONS,
    missing_browser_reason,
    stats,
    wait_until,
)
from tests.udp_ports import free_udp_range

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LAN = lan_address()
DENY_ARGS = [a for a in BASE_ARGS if a != FAKE_UI] + [AUTOPLAY_ALLOWED]
"""A fake camera whose permission prompt is refused (headless Chromium under Playwright
dismisses it: getUserMedia fails with NotAllowedError)."""
DENIED_NOTE = "摄像头未开启：浏览器没有允许本页使用摄像头和麦克风"

RECORD_OFFERS = RECORD_PEER_CONNECTIONS
SELECTED_REMOTE = """
async () => {
  const out = [];
  for (const pc of window.__pcs) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        const remote = pair && report.get(pair.remoteCandidateId);
        if (remote) out.push({address: remote.address, port: remote.port});
      }
    });
  }
  return out;
}
"""
OFFERS = ("() => window.__pcs.filter((pc) => pc.localDescription)"
          ".map((pc) => pc.localDescription.sdp)")


class HeadlessTeacher:
    """The headless client publishing a synthetic camera + tone, and the lesson started,
    on an event loop of its own (the browser tests are synchronous). A subclass may send
    other tracks (:meth:`tracks`) or come back to a live lesson (``starts_lesson``)."""

    starts_lesson = True

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HeadlessTeacher:
        self._thread.start()
        if not self.ready.wait(30) or self.error is not None:
            self.__exit__()
            raise AssertionError(f"headless teacher did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def tracks(self) -> tuple[Any, Any]:
        """The camera and microphone it publishes (created on its own event loop)."""
        return SyntheticVideoTrack(320, 240), SyntheticAudioTrack()

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        client = ClassroomClient(self.base_url, self.token)
        try:
            await client.connect()
            pc = await client.publish(*self.tracks())
            if self.starts_lesson:
                await client.start_lesson()
            await client.wait_for(lambda: pc.connectionState == "connected", 15)
            self.ready.set()
            await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
            self.ready.set()
        finally:
            with contextlib.suppress(Exception):
                await client.close()


@pytest.fixture
def server_backend() -> list[str]:
    """ICE does not touch the store: the memory backend only (one run)."""
    return []


@pytest.fixture(scope="module")
def denying_browser(playwright_instance: Any) -> Iterator[Any]:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=DENY_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def lan_server() -> Iterator[ServerProcess]:
    """``classroom serve --host <this machine's non-loopback address> --rtc-ports L-H``
    (media in a fixed range, as a school deployment would run it)."""
    if LAN is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind the server to")
    low, high = free_udp_range(4)
    srv = ServerProcess(["--rtc-ports", f"{low}-{high}"],
                        Path(tempfile.mkdtemp(prefix="classroom-nocam-")))
    srv.rtc_ports = range(low, high + 1)  # type: ignore[attr-defined]
    srv.host = LAN
    srv.base_url = f"http://{LAN}:{srv.port}"
    srv.start()
    yield srv
    srv.stop()


def open_classroom(open_page: Callable[..., Any], browser: Any, srv: ServerProcess,
                   lesson: str) -> tuple[Any, float]:
    token = srv.token("classroom", lesson, name="教学点电视", school="山村小学")
    opened = time.monotonic()
    page = open_page(srv.page_url("class", lesson, token), browser, RECORD_OFFERS)
    return page, opened


def assert_receives_within_10s(page: Any, opened: float) -> dict[str, Any]:
    """framesDecoded and audioBytesReceived rising, 10 s after the page was opened."""
    first: dict[str, Any] = {}

    def rising() -> dict[str, Any] | None:
        now = stats(page)
        if now["framesDecoded"] > 0 and now["audioBytesReceived"] > 0 and not first:
            first.update(now)
            print(f"first video and audio {time.monotonic() - opened:.2f} s after opening")
        if first and (now["framesDecoded"] >= first["framesDecoded"] + 10
                      and now["audioBytesReceived"] > first["audioBytesReceived"]):
            return now
        return None

    remaining = 10.0 - (time.monotonic() - opened)
    now = wait_until(rising, remaining, "teacher's video and audio not rising at the "
                     "classroom within 10 s of opening it", interval=0.2)
    assert now["connectionState"] == "connected"
    return now


def assert_offers_hid_addresses(page: Any) -> None:
    """The page's offers carried host candidates only as mDNS names (else this test
    would not exercise the hidden-address path at all)."""
    offers = page.evaluate(OFFERS)
    assert offers, "the page made no offer"
    hosts = [line.split()[4] for sdp in offers for line in sdp.splitlines()
             if line.startswith("a=candidate:") and " typ host" in line]
    assert hosts, f"no host candidate in the page's offers: {offers}"
    assert all(h.endswith(".local") for h in hosts), f"addresses not hidden: {hosts}"


def test_tv_without_camera_receives_on_loopback(server, open_page, tv_browser) -> None:
    lesson = "nocam-loopback"
    with HeadlessTeacher(server.base_url, server.token("teacher", lesson, name="王老师")):
        room, opened = open_classroom(open_page, tv_browser, server, lesson)
        now = assert_receives_within_10s(room, opened)
        assert now["lessonState"] == "live"
        assert_offers_hid_addresses(room)


def test_tv_without_camera_receives_at_the_lan_address(lan_server, open_page,
                                                       tv_browser) -> None:
    lesson = "nocam-lan"
    with HeadlessTeacher(lan_server.base_url, lan_server.token("teacher", lesson)):
        room, opened = open_classroom(open_page, tv_browser, lan_server, lesson)
        assert room.url.startswith(f"http://{LAN}:")
        assert_receives_within_10s(room, opened)
        assert_offers_hid_addresses(room)
        selected = room.evaluate(SELECTED_REMOTE)
        assert selected and all(s["port"] in lan_server.rtc_ports for s in selected), selected


def test_classroom_that_denies_the_camera_still_receives(server, open_page,
                                                         denying_browser) -> None:
    lesson = "nocam-denied"
    with HeadlessTeacher(server.base_url, server.token("teacher", lesson)):
        room, opened = open_classroom(open_page, denying_browser, server, lesson)
        assert_receives_within_10s(room, opened)
        wait_until(lambda: DENIED_NOTE in room.locator("#uplink-note").inner_text(), 10,
                   "the classroom did not say its camera was refused")
        assert_offers_hid_addresses(room)
