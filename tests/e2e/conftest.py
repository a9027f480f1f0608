"""Browser end-to-end fixtures: the real server as a subprocess, Debian's Chromium.

* ``server``: ``python -m signaling.cli serve`` on a free port with its own secret and
  library folder, healthy on ``/healthz`` before the test starts; ``kill()`` / ``start()``
  restart it on the same port. The store backend is a fixture parameter
  (``server_backend``): memory by default (the store's two backends are tested against
  each other in tests/signaling and tests/quiz; a page does not see which one serves it).
  A test where the store matters to the page (a restart, two nodes) runs on both with
  ``@BOTH_STORES``; ``CLASSROOM_E2E_BACKENDS=memory,redis`` runs every test on both
  (Redis comes from the ``redis_url`` fixture of tests/conftest.py).
* ``browser``: headless Chromium from ``/usr/bin/chromium`` with fake camera and
  microphone, autoplay allowed; ``launch_browser(autoplay=False)`` starts one that
  blocks autoplay with sound.

Modules using these skip themselves (with the reason) when Chromium or Playwright is
missing; nothing here downloads a browser.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pages import CHROMIUM, missing_browser_reason
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]

BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    # a page left in a background tab must keep its timers (reconnect, watchdog) running
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
AUTOPLAY_ALLOWED = "--autoplay-policy=no-user-gesture-required"
FAKE_DEVICE = "--use-fake-device-for-media-stream=fps=30"
FAKE_UI = "--use-fake-ui-for-media-stream"
TV_ARGS = [a for a in BASE_ARGS if a not in (FAKE_DEVICE, FAKE_UI)] + [AUTOPLAY_ALLOWED]
"""A classroom TV: no camera, no microphone, no media permission."""
AUTOPLAY_BLOCKED = "--autoplay-policy=document-user-activation-required"
# Chromium's own policy sometimes lets a page play with sound in a long run (its
# user-activation and engagement heuristics); this script makes "blocked" certain: an
# unmuted play() before a real press on the page is refused as a browser would refuse it.
BLOCK_UNMUTED_PLAY = """
(() => {
  let pressed = false;
  for (const kind of ["pointerdown", "keydown", "touchstart"]) {
    addEventListener(kind, (e) => { if (e.isTrusted) pressed = true; }, true);
  }
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    if (!this.muted && !pressed) {
      return Promise.reject(new DOMException("play() needs a user gesture", "NotAllowedError"));
    }
    return play.call(this);
  };
})();
"""


class ServerProcess:
    """`classroom serve` in a subprocess on a fixed port, restartable in place."""

    def __init__(self, extra_args: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.secret = "e2e-secret-" + os.urandom(16).hex()
        self.host = "127.0.0.1"  # --host (tests/e2e/test_https.py binds 0.0.0.0)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.health_ssl: Any = None  # ssl context for /healthz when the server serves TLS
        self.library = workdir / "library"
        self.log_path = workdir / "server.log"
        self.extra_args = extra_args
        self.env: dict[str, str] = {}  # added to the child's environment (e.g. a TURN secret)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "signaling.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--secret",
            self.secret,
            "--library",
            str(self.library),
            "--no-demo",
            "--workers",  # one process: tests kill and restart it as one node
            "1",
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None, "already running"
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        log.write(f"\n--- start #{self.starts}: {' '.join(self.command)}\n".encode())
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
            self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1,
                                            context=self.health_ssl) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not healthy within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to any socket, as when a machine dies."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def token(self, role: str, lesson: str, **claims: Any) -> str:
        from signaling.auth import mint_token

        return mint_token(self.secret, role=role, lesson=lesson, **claims)

    def page_url(self, page: str, lesson: str, token: str | None, query: str = "") -> str:
        url = f"{self.base_url}/{page}/{lesson}{query}"
        return url + (f"#token={token}" if token is not None else "")


@contextlib.contextmanager
def district_nodes(redis_url: str, prefix: str, a_args: list[str] | None = None,
                   b_args: list[str] | None = None
                   ) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two `classroom serve` nodes of one district (one Redis, one secret), A and B,
    started, and stopped at the end."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    a = ServerProcess(["--redis-url", redis_url, *(a_args or [])], work / "a")
    b = ServerProcess(["--redis-url", redis_url, *(b_args or [])], work / "b")
    b.secret = a.secret  # one district: one secret
    try:
        for srv, sub in ((a, "a"), (b, "b")):
            (work / sub).mkdir()
            srv.start()
        yield a, b
    finally:
        for srv in (a, b):
            srv.stop()


def _backends() -> list[str]:
    names = os.environ.get("CLASSROOM_E2E_BACKENDS", "memory")
    return [n.strip() for n in names.split(",") if n.strip()]


BOTH_STORES = pytest.mark.parametrize("server_backend", ["memory", "redis"], indirect=True)
"""A test where the store matters to what the page shows runs on memory and on Redis."""


@pytest.fixture(params=_backends())
def server_backend(request: pytest.FixtureRequest) -> list[str]:
    """Extra `classroom serve` arguments selecting the store backend."""
    if request.param == "memory":
        return []
    if request.param == "redis":
        return ["--redis-url", request.getfixturevalue("redis_url")]
    raise ValueError(f"unknown e2e backend {request.param!r}")


@pytest.fixture
def server(server_backend: list[str], request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="classroom-e2e-"))
    srv = ServerProcess(server_backend, workdir)
    srv.start()
    yield srv
    srv.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\n--- server log ({srv.log_path}) ---\n{srv.log_tail(80)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Any]:
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def launch_browser(playwright_instance: Any) -> Iterator[Callable[..., Any]]:
    """Start a headless Chromium; every browser started here is closed at the end."""
    browsers: list[Any] = []

    def launch(autoplay: bool = True) -> Any:
        args = BASE_ARGS + [AUTOPLAY_ALLOWED if autoplay else AUTOPLAY_BLOCKED]
        browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=args)
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        with contextlib.suppress(Exception):  # already gone
            browser.close()


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[..., Any]) -> Any:
    return launch_browser(autoplay=True)


@pytest.fixture(scope="module")
def tv_browser(playwright_instance: Any) -> Iterator[Any]:
    """A classroom TV: no camera, no microphone, no media permission."""
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=TV_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Open a URL in a fresh browser context (its own storage, like another machine).

    Each page records its console, the URLs it requested and the WebSockets it opened
    (``page.requests``, ``page.sockets``) so tests can check where the token went."""
    contexts: list[Any] = []

    def open_(url: str, in_browser: Any = None, init_script: str | None = None) -> Any:
        ctx = (in_browser or browser).new_context(viewport={"width": 1280, "height": 720})
        contexts.append(ctx)
        if init_script:
            ctx.add_init_script(init_script)
        page = ctx.new_page()
        page.console_lines = []
        page.requests = []
        page.sockets = []
        page.on("console", lambda m: page.console_lines.append(m.text))
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("websocket", lambda ws: page.sockets.append(ws.url))
        page.goto(url)
        return page

    yield open_
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for ctx in contexts:
            for page in ctx.pages:
                lines = "\n".join(page.console_lines[-30:])
                print(f"\n--- console of {page.url.split('#')[0]} ---\n{lines}")
    for ctx in contexts:
        with contextlib.suppress(Exception):
            ctx.close()
