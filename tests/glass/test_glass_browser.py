"""Glass-to-glass latency in real browsers (docs/latency.md).

One lesson: a Chromium teacher (fake camera, 640x360), a Chromium classroom on this
machine, and, when network namespaces and coturn are there, a Chromium classroom inside a
NetLab namespace whose only way out for UDP is TURN through a forwarder that holds every
datagram towards the classroom for 100 ms (the kernel has no netem: tests/glass/udp_delay.py).
The pages report every second (``?glass_ms=1000``); the server's histogram and its
per-classroom p50/p95 (``GET /api/lessons/{lesson}/glass``) are read as ops would.

- on this machine: the histogram has video and audio observations, p95 <= 200 ms;
- behind the link: the same lesson's video measured about 100 ms later than on this
  machine (it measures, it is not a constant).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import coturn
from tests.e2e.conftest import AUTOPLAY_ALLOWED, BASE_ARGS, ServerProcess
from tests.e2e.pages import missing_browser_reason, press, wait_media_rising, wait_until
from tests.glass.udp_delay import UdpDelay
from tests.netlab import NetLab, available

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

LESSON = "glass"
SCHOOL_HERE, SCHOOL_THERE = "城区一小", "山村小学"
ADDED_DELAY = 0.100
"""Seconds every datagram towards the namespaced classroom is held."""
SAMPLES = 6
"""Video samples per classroom before the figures are read."""
TURN_SECRET = "glass-turn-" + os.urandom(8).hex()


def metric_counts(base_url: str) -> dict[tuple[str, str], float]:
    """``(school, kind) -> observations`` of classroom_glass_to_glass_seconds."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for match in re.finditer(r'^classroom_glass_to_glass_seconds_count\{([^}]*)\} (\S+)$',
                             text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        out[(labels["school"], labels["kind"])] = float(match.group(2))
    return out


def summary(srv: ServerProcess) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{srv.base_url}/api/lessons/{LESSON}/glass",
        headers={"Authorization": "Bearer " + srv.token("teacher", LESSON)})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())["classrooms"]


def glass_of(page: Any) -> dict[str, Any]:
    return page.evaluate("window.classroomGlass ? window.classroomGlass() : null") or {}


def wait_samples(srv: ServerProcess, page: Any, kinds: tuple[str, ...] = ("video",),
                 count: int = SAMPLES, timeout: float = 30.0) -> dict[str, Any]:
    """The page's classroom summary once it has ``count`` samples of each kind."""
    def enough() -> dict[str, Any] | None:
        peer = glass_of(page).get("peer_id")
        mine = summary(srv).get(peer) if peer else None
        if mine and all(mine.get(k, {}).get("samples", 0) >= count for k in kinds):
            return mine
        return None

    return wait_until(enough, timeout, f"{count} glass samples of {kinds} from the page")


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab | None]:
    if not available()[0] or not coturn.available()[0]:
        yield None  # the namespace test skips; the loopback one runs
        return
    with NetLab(offloads_off=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def link(lab: NetLab | None) -> Iterator[tuple[coturn.Coturn, UdpDelay] | None]:
    """coturn on the host side of the veth, behind the delaying forwarder."""
    if lab is None:
        yield None
        return
    with coturn.Coturn(lab.host_ip, TURN_SECRET, allowed_peers=[lab.host_ip]) as turn:
        delay = UdpDelay((lab.host_ip, 0), (lab.host_ip, turn.port), down=ADDED_DELAY)
        try:
            yield turn, delay
        finally:
            delay.close()


@pytest.fixture(scope="module")
def server(lab: NetLab | None, link: Any) -> Iterator[ServerProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="classroom-glass-"))
    args = ["--no-recording"]
    if link is not None:
        args += ["--turn-url", f"turn:{lab.host_ip}:{link[1].address[1]}?transport=udp"]
    srv = ServerProcess(args, workdir)
    if lab is not None:
        srv.host = "0.0.0.0"  # the host's pages on loopback, the namespace's on the veth
    srv.env["CLASSROOM_TURN_SECRET"] = TURN_SECRET
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def lesson(playwright: Any, server: ServerProcess) -> Iterator[dict[str, Any]]:
    """The teacher live with its camera and the classroom on this machine playing."""
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=[*BASE_ARGS, AUTOPLAY_ALLOWED])
    pages = {}
    try:
        for name, page, role, school, query in (
                ("teacher", "teach", "teacher", SCHOOL_HERE, "?res=360&glass_ms=1000"),
                ("here", "class", "classroom", SCHOOL_HERE, "?glass_ms=1000")):
            tab = browser.new_context().new_page()
            tab.goto(server.page_url(page, LESSON, server.token(role, LESSON, name=name,
                                                                  school=school), query))
            pages[name] = tab
        press(pages["teacher"], "start-lesson")
        wait_media_rising(pages["here"], timeout=40)
        yield {"browser": browser, **pages}
    finally:
        browser.close()


def test_loopback_classroom_glass_to_glass_p95_within_200ms(server, lesson) -> None:
    before = metric_counts(server.base_url)
    mine = wait_samples(server, lesson["here"], ("video", "audio"))
    after = metric_counts(server.base_url)
    for kind in ("video", "audio"):
        assert after.get((SCHOOL_HERE, kind), 0) > before.get((SCHOOL_HERE, kind), 0), kind
    print(f"\nloopback glass-to-glass: {mine}")
    assert 0 < mine["video"]["p50_ms"] <= mine["video"]["p95_ms"] <= 200, mine
    # The 200 ms LAN target is glass-to-glass of the picture. Audio is measured and bounded
    # too, looser: with 6 samples its p95 is the first ones (jitter buffer still settling,
    # an SR only every ~5 s); CI at load ~3 gave 215.7 ms (docs/latency.md).
    assert 0 < mine["audio"]["p95_ms"] <= 400, mine


def test_classroom_behind_a_delayed_link_measures_the_added_delay(
        server, lesson, lab, link, playwright) -> None:
    if lab is None:
        pytest.skip("network namespaces or coturn missing: " + (available()[1] or
                                                              coturn.available()[1]))
    turn, delay = link
    # UDP out of the namespace only to the forwarder (TURN): media must take the slow way
    lab.run("nft", "add", "table", "inet", "glass")
    lab.run("nft", "add", "chain", "inet", "glass", "out",
            "{ type filter hook output priority 0; policy accept; }")
    lab.run("nft", "add", "rule", "inet", "glass", "out", "oifname", "lo", "accept")
    lab.run("nft", "add", "rule", "inet", "glass", "out", "udp", "dport", "!=",
            str(delay.address[1]), "drop")
    workdir = Path(tempfile.mkdtemp(prefix="classroom-glass-ns-"))
    wrapper = workdir / "chromium-in-namespace"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {lab.ns} /usr/bin/chromium \"$@\"\n")
    wrapper.chmod(0o755)
    far = playwright.chromium.launch(executable_path=str(wrapper),
                                     args=[*BASE_ARGS, AUTOPLAY_ALLOWED])
    try:
        page = far.new_context().new_page()
        base = f"http://{lab.host_ip}:{server.port}"
        token = server.token("classroom", LESSON, name="far", school=SCHOOL_THERE)
        page.goto(f"{base}/class/{LESSON}?glass_ms=1000#token={token}")
        wait_media_rising(page, timeout=40)
        far_summary = wait_samples(server, page)
        here = summary(server)[glass_of(lesson["here"])["peer_id"]]
        print(f"\nbehind the link (+{1000 * ADDED_DELAY:.0f} ms): {far_summary}\n"
              f"on this machine meanwhile: {here}\n"
              f"forwarded: {delay.up_packets} up, {delay.down_packets} down")
        assert delay.down_packets > 100, "media did not come through the delayed link"
        rise = far_summary["video"]["p50_ms"] - here["video"]["p50_ms"]
        assert 0.6 * 1000 * ADDED_DELAY <= rise <= 1.6 * 1000 * ADDED_DELAY, (
            rise, far_summary, here)
        counts = metric_counts(server.base_url)
        assert counts.get((SCHOOL_THERE, "video"), 0) >= SAMPLES
    finally:
        far.close()
        with contextlib.suppress(Exception):
            lab.run("nft", "delete", "table", "inet", "glass", check=False)
