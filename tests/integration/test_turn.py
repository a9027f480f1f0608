"""TURN for blocked school networks (issue 12 item 3), with a real coturn and real firewalls.

One NetLab namespace is the school; the host side holds coturn (Debian's turnserver: TURN
on UDP+TCP, TLS with a certificate signed by a CA made here), `classroom serve --turn-url
...` and a headless teacher publishing video and audio. Inside the namespace nftables
drops all UDP and every TCP port but the web port and one TURN port (NETWORK-TESTS.md "A
school firewall"), so the only way media can arrive is relayed by coturn over TCP (or TLS).

* the headless classroom (`python -m classroom_client`) and a Chromium classroom (run with
  `ip netns exec`) each decode the teacher's video and audio within 10 s, and their
  selected ICE pair is a relay pair; Chromium also with only a `turns:` URL (TURN over
  TLS, the only TCP port open besides the web port), trusting coturn's certificate the way
  a school's machines would: the test CA is a trusted root in that Chromium's own NSS
  database (a temporary HOME), no certificate-error switches;
* faults, on the open network (firewall off): a server with the wrong TURN secret (coturn
  answers 401) still gets the lesson through on a direct pair, and the page says the relay
  refused it; a TURN server that is down costs nothing: the direct pair is used.

Skipped (with the reason) only where namespaces, coturn or Chromium are missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from classroom_client import ClassroomClient
from classroom_client.media import EncodedVideoTrack, SyntheticAudioTrack
from tests import coturn
from tests.e2e.conftest import BASE_ARGS, ServerProcess
from tests.e2e.pages import missing_browser_reason, stats, wait_until
from tests.netlab import NetLab, available
from tests.tls_certs import make_ca, make_cert, nss_home

pytestmark = pytest.mark.skipif(not available()[0], reason=available()[1] or "netlab")

REPO = Path(__file__).resolve().parents[2]
LESSON = "turn"
TURN_SECRET = "coturn-shared-" + os.urandom(8).hex()
DEADLINE = 10.0  # the issue: a TURN-only classroom decodes video and audio within 10 s


def school_firewall(lab: NetLab, tcp_ports: list[int] | None) -> None:
    """Outbound from the school: no UDP, TCP only to ``tcp_ports`` (None: no firewall)."""
    lab.run("nft", "delete", "table", "inet", "fw", check=False)
    if tcp_ports is None:
        return
    ports = ", ".join(str(p) for p in tcp_ports)
    for rule in (["add", "table", "inet", "fw"],
                 ["add", "chain", "inet", "fw", "out",
                  "{ type filter hook output priority 0; policy accept; }"],
                 ["add", "rule", "inet", "fw", "out", "oifname", "lo", "accept"],
                 ["add", "rule", "inet", "fw", "out", "meta", "l4proto", "udp", "drop"],
                 ["add", "rule", "inet", "fw", "out", "tcp", "dport", "!=", f"{{ {ports} }}",
                  "drop"]):
        lab.run("nft", *rule)


class Teacher:
    """A headless teacher publishing 320x240 video and a tone, on its own event loop."""

    def __init__(self, base_url: str, token: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = ClassroomClient(base_url, token)
        self._call(self._start())

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        await self.client.connect()
        await self.client.publish(EncodedVideoTrack(320, 240, 15, bitrate=300_000),
                                  SyntheticAudioTrack())
        await self.client.start_lesson()

    def close(self) -> None:
        try:
            self._call(self.client.close(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def serve(lab: NetLab, workdir: Path, turn_args: list[str], secret: str | None) -> ServerProcess:
    """`classroom serve` on the host side of the veth, the TURN secret in the environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(["--no-recording", *turn_args], workdir)
    srv.host = lab.host_ip
    srv.base_url = f"http://{lab.host_ip}:{srv.port}"
    if secret is not None:
        srv.env["CLASSROOM_TURN_SECRET"] = secret
    srv.start()
    return srv


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    ok, why = coturn.available()
    if not ok:
        pytest.skip(why)
    with NetLab(offloads_off=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="classroom-turn-"))


@pytest.fixture(scope="module")
def turn_ca(workdir: Path) -> tuple[Path, Path]:
    """The school's own root CA: trusted by the headless client (SSL_CERT_FILE) and by the
    namespaced Chromium (its NSS database), nowhere else."""
    return make_ca(workdir, "classroom-test-ca")


@pytest.fixture(scope="module")
def turn_cert(lab: NetLab, workdir: Path, turn_ca: tuple[Path, Path]) -> tuple[Path, Path]:
    # an IP SAN: the turns: URL names coturn by the lab's host address
    return make_cert(workdir, "turn", [lab.host_ip], ca=turn_ca)


@pytest.fixture(scope="module")
def turnserver(lab: NetLab, turn_cert: tuple[Path, Path]) -> Iterator[coturn.Coturn]:
    # private peers denied except the media server's address, as in deploy/coturn
    with coturn.Coturn(lab.host_ip, TURN_SECRET, allowed_peers=[lab.host_ip],
                       tls=turn_cert) as server:
        yield server


def _turn_args(server: coturn.Coturn) -> list[str]:
    return [a for t in ("udp", "tcp", "tls") for a in ("--turn-url", server.url(t))]


@pytest.fixture(scope="module")
def lesson(lab: NetLab, workdir: Path, turnserver: coturn.Coturn) -> Iterator[ServerProcess]:
    srv = serve(lab, workdir / "ok", _turn_args(turnserver), TURN_SECRET)
    teacher = Teacher(srv.base_url, srv.token("teacher", LESSON, name="T"))
    try:
        yield srv
    finally:
        teacher.close()
        srv.stop()
        log = srv.log_path.read_text(errors="replace")
        assert TURN_SECRET not in log, "the TURN secret reached the server log"


class Remote:
    """`python -m classroom_client` inside the namespace; its JSON lines read by a thread."""

    def __init__(self, lab: NetLab, srv: ServerProcess, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.started = time.monotonic()
        self.proc = lab.popen(sys.executable, "-m", "classroom_client", srv.base_url,
                              srv.token("classroom", LESSON, name="school"),
                              "--seconds", "25", "--interval", "0.25", *extra,
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **(env or {})})
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    @property
    def last(self) -> dict:
        return self.lines[-1] if self.lines else {}

    def wait_media(self) -> float:
        """Seconds from launch until video and audio were both decoded."""
        def got() -> bool:
            return self.last.get("video_frames", 0) > 0 and self.last.get("audio_frames", 0) > 0
        wait_until(lambda: got() or self.proc.poll() is not None, DEADLINE + 10,
                   "the namespaced client decoding")
        if not got():
            raise AssertionError(f"client exited: {self.proc.stderr.read()[-2000:]}")
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_headless_classroom_behind_a_school_firewall_gets_the_lesson_over_turn(
        lab, lesson, turnserver, turn_ca, transport) -> None:
    port = turnserver.port if transport == "tcp" else turnserver.tls_port
    school_firewall(lab, [lesson.port, port])
    # turns: checks coturn's certificate: the test's own CA, as a school installs its own
    client = Remote(lab, lesson, env={"SSL_CERT_FILE": str(turn_ca[0])})  # auto-picks
    try:
        took = client.wait_media()
        pair = wait_until(lambda: client.last.get("pair"), 5, "a selected pair")
        assert pair["local_type"] == "relay", pair
        assert client.last["turn_url"] == turnserver.url(transport)
        print(f"headless over TURN/{transport}: video+audio decoded {took:.1f} s after launch")
        assert took <= DEADLINE, f"took {took:.1f} s"
    finally:
        client.stop()


# ---- Chromium in the namespace --------------------------------------------------------

def _school_chromium(pw: Any, lab: NetLab, workdir: Path, name: str,
                     home: Path | None) -> Any:
    """Chromium in the namespace (Playwright starts the wrapper), with ``home`` as HOME."""
    wrapper = workdir / name
    env = f"HOME={home} " if home is not None else ""
    wrapper.write_text(f"#!/bin/sh\n{env}exec ip netns exec {lab.ns} /usr/bin/chromium \"$@\"\n")
    wrapper.chmod(0o755)
    # host addresses in the SDP instead of mDNS names: the direct-path fault tests must not
    # depend on the relay resolving .local names (another fix); TURN candidates are real
    args = [*BASE_ARGS, "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns"]
    return pw.chromium.launch(executable_path=str(wrapper), args=args)


@pytest.fixture(scope="module")
def school_playwright() -> Iterator[Any]:
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def school_browser(school_playwright: Any, lab: NetLab, workdir: Path,
                   turn_ca: tuple[Path, Path]) -> Iterator[Any]:
    # its own HOME: an NSS database ($HOME/.pki/nssdb) with the test CA as a trusted root,
    # for this Chromium only (without certutil the turns: tests skip, the others run)
    home = nss_home(workdir, turn_ca[0]) if shutil.which("certutil") else None
    browser = _school_chromium(school_playwright, lab, workdir, "chromium-in-school", home)
    yield browser
    browser.close()


# every icecandidateerror of the page's peer connections (url, errorCode, errorText): what
# went wrong with a TURN server, as chrome://webrtc-internals would show it
RECORD_ICE_ERRORS = """
window.__iceErrors = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new Native(...args);
  pc.addEventListener("icecandidateerror", (e) => window.__iceErrors.push(
    {url: e.url, errorCode: e.errorCode, errorText: e.errorText, address: e.address}));
  return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
"""


def _classroom_page(browser: Any, srv: ServerProcess) -> Any:
    ctx = browser.new_context()
    ctx.add_init_script(RECORD_ICE_ERRORS)
    page = ctx.new_page()
    page.console_lines = []
    page.on("console", lambda m: page.console_lines.append(m.text))
    page.goto(srv.page_url("class", LESSON, srv.token("classroom", LESSON, name="TV")))
    return page


def _page_media(page: Any) -> tuple[float, dict]:
    start = time.monotonic()
    now = wait_until(lambda: (lambda s: s if s["framesDecoded"] > 0
                              and s["audioBytesReceived"] > 0 else None)(stats(page)),
                     DEADLINE + 10, "the classroom page decoding video and audio")
    return time.monotonic() - start, now


def test_chromium_classroom_behind_a_school_firewall_gets_the_lesson_over_turn_tcp(
        lab, lesson, turnserver, school_browser) -> None:
    school_firewall(lab, [lesson.port, turnserver.port])
    page = _classroom_page(school_browser, lesson)
    try:
        took, _ = _page_media(page)
        pair = wait_until(lambda: stats(page)["candidate"], 5, "a selected candidate pair")
        assert pair["relayed"] and pair["localType"] == "relay", pair
        assert pair["relayProtocol"] == "tcp", pair
        print(f"Chromium over TURN/tcp: video+audio decoded {took:.1f} s after the page loaded")
        assert took <= DEADLINE, f"took {took:.1f} s"
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def turns_lesson(lab: NetLab, workdir: Path, turnserver: coturn.Coturn) -> Iterator[ServerProcess]:
    """A server handing out only the turns: URL (TURN over TLS), with a teacher on air."""
    if shutil.which("certutil") is None:
        pytest.skip("certutil missing (scripts/test installs the Debian package libnss3-tools)")
    school_firewall(lab, None)
    srv = serve(lab, workdir / "turns", ["--turn-url", turnserver.url("tls")], TURN_SECRET)
    teacher = Teacher(srv.base_url, srv.token("teacher", LESSON, name="T"))
    try:
        yield srv
    finally:
        teacher.close()
        srv.stop()


def _ice_errors(page: Any, url: str) -> list[dict]:
    return [e for e in page.evaluate("() => window.__iceErrors") if e["url"] == url]


def test_chromium_classroom_behind_a_school_firewall_gets_the_lesson_over_turns_only(
        lab, turnserver, turns_lesson, school_browser) -> None:
    school_firewall(lab, [turns_lesson.port, turnserver.tls_port])
    mark = len(turnserver.log_text())
    page = _classroom_page(school_browser, turns_lesson)
    try:
        try:
            took, _ = _page_media(page)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nicecandidateerror: "
                                 f"{_ice_errors(page, turnserver.url('tls'))}\n"
                                 f"coturn: {turnserver.tail(15)}") from None
        pair = wait_until(lambda: stats(page)["candidate"], 5, "a selected candidate pair")
        assert pair["relayed"] and pair["localType"] == "relay", pair
        assert pair["relayProtocol"] == "tls", pair
        # coturn's side: a TLS session from the school that allocated a relay
        log = turnserver.log_text()[mark:]
        assert "method=TLS" in log and "ALLOCATE processed, success" in log, log[-3000:]
        print(f"Chromium over TURN/tls (turns: only): video+audio decoded {took:.1f} s "
              "after the page loaded")
        assert took <= DEADLINE, f"took {took:.1f} s"
    finally:
        page.context.close()


def test_chromium_without_the_school_ca_refuses_coturns_certificate(
        lab, workdir, turnserver, turns_lesson, school_playwright) -> None:
    """The control: the same Chromium with an empty NSS database. It opens TCP to the TLS
    port and hangs up in the handshake (coturn: a TLS session with no username, no
    request); the page gets icecandidateerror 701 for the turns: URL and no relay. So the
    test above passes because of the trusted root, not because Chromium does not check."""
    school_firewall(lab, [turns_lesson.port, turnserver.tls_port])
    home = workdir / "home-without-ca"
    home.mkdir(exist_ok=True)
    browser = _school_chromium(school_playwright, lab, workdir, "chromium-no-ca", home)
    mark = len(turnserver.log_text())
    try:
        page = _classroom_page(browser, turns_lesson)
        errors = wait_until(lambda: _ice_errors(page, turnserver.url("tls")), DEADLINE,
                            "an icecandidateerror for the turns: URL")
        assert errors[0]["errorCode"] == 701, errors  # "Failed to establish connection"
        now = stats(page)
        assert now["framesDecoded"] == 0 and not now["candidate"], now
        log = turnserver.log_text()[mark:]
        assert f"TLS/TCP socket disconnected: {lab.ns_ip}:" in log, log[-3000:]
        assert "ALLOCATE" not in log, log[-3000:]
        print(f"Chromium without the CA: {errors[0]}")
    finally:
        browser.close()


# ---- faults: wrong secret, TURN down (open network) ------------------------------------

def test_wrong_turn_secret_falls_back_to_a_direct_path_and_says_so(
        lab, lesson, turnserver, school_browser, workdir) -> None:
    school_firewall(lab, None)
    srv = serve(lab, workdir / "wrong", _turn_args(turnserver), "not-the-coturn-secret")
    teacher = Teacher(srv.base_url, srv.token("teacher", LESSON, name="T"))
    page = _classroom_page(school_browser, srv)
    client = Remote(lab, srv, "--turn-transport", "tcp")
    try:
        took, _ = _page_media(page)
        assert took <= DEADLINE, f"took {took:.1f} s"
        assert stats(page)["turnRefused"], "the page never heard coturn's 401"
        # said in plain words once the picture plays (it came another way)
        wait_until(lambda: "TURN" in page.locator("#detail").inner_text(), 5,
                   "the notice that the relay refused")
        pair = stats(page)["candidate"]
        assert pair and not pair["relayed"], pair
        client.wait_media()
        assert client.last["pair"]["local_type"] == "host", client.last
        assert client.last["turn_url"] == turnserver.url("tcp")  # asked for, refused
    finally:
        client.stop()
        page.context.close()
        teacher.close()
        srv.stop()


@pytest.mark.long  # 18 s waiting out TURN; the other TURN tests run
def test_turn_server_down_direct_paths_still_used(lab, school_browser, workdir) -> None:
    school_firewall(lab, None)
    dead = coturn.Coturn(lab.host_ip, TURN_SECRET)  # never started: nothing listens there
    srv = serve(lab, workdir / "down", [a for t in ("udp", "tcp") for a in
                                         ("--turn-url", dead.url(t))], TURN_SECRET)
    teacher = Teacher(srv.base_url, srv.token("teacher", LESSON, name="T"))
    page = _classroom_page(school_browser, srv)
    client = Remote(lab, srv)
    try:
        took, _ = _page_media(page)
        assert took <= DEADLINE, f"took {took:.1f} s"
        pair = stats(page)["candidate"]  # host, or prflx as the relay saw it: direct
        assert pair and not pair["relayed"] and pair["localType"] in ("host", "prflx"), pair
        assert not stats(page)["turnRefused"]
        print(f"TURN down: page decoded {took:.1f} s after load; headless", end=" ")
        print(f"{client.wait_media():.1f} s after launch")
        assert client.last["pair"]["local_type"] == "host", client.last
        assert client.last["turn_url"] is None  # none of the TURN URLs worked: not used
    finally:
        client.stop()
        page.context.close()
        teacher.close()
        srv.stop()
