"""What the browser tests read off the pages: stats, status texts, waits with deadlines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

CHROMIUM = "/usr/bin/chromium"

RECORD_PEER_CONNECTIONS = """
(() => {
  window.__pcs = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Native);
})();
"""
"""Page init script: every RTCPeerConnection the page makes is kept in ``window.__pcs``
(for its getStats and descriptions)."""

# The classroom view's status line, in plain words (zh-CN, the default language).
CONNECTING = "正在连接…"
WAITING = "等待老师开始上课"
LIVE = "上课中"
RECONNECTING = "网络中断，正在重新连接…"
ENDED = "本节课已结束"
INVALID = "链接无效或已过期"
INCOMPLETE = "链接不完整"
REMOVED = "本课堂已被主讲老师移出本节课"


def missing_browser_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return (
            f"{CHROMIUM} is missing (install Debian's chromium package: apt-get install chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (pip install -e '.[test]')"
    return None


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    message: str,
    interval: float = 0.1,
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` at the
    deadline (showing the last value seen). Every 0.1 s: a wait overshoots its condition by
    half the interval on average, and the browser tests wait a few hundred times."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (after {timeout:.0f}s; last value: {last!r})")
        time.sleep(interval)


def stats(page: Any) -> dict[str, Any]:
    """``window.classroomStats()`` of a page."""
    return page.evaluate("() => window.classroomStats()")


def status(page: Any) -> str:
    return page.locator("#status").inner_text().strip()


def wait_status(page: Any, text: str, timeout: float = 20.0) -> None:
    wait_until(lambda: status(page) == text, timeout, f"status never became {text!r}")


def wait_media_rising(page: Any, timeout: float = 30.0, frames: int = 30) -> dict[str, Any]:
    """Wait until decoded video frames and received audio bytes both grow (by at least
    ``frames`` frames) from their values now; return the last stats."""
    first = stats(page)

    def grown() -> dict[str, Any] | None:
        now = stats(page)
        if (
            now["framesDecoded"] >= first["framesDecoded"] + frames
            and now["audioBytesReceived"] > first["audioBytesReceived"]
        ):
            return now
        return None

    return wait_until(grown, timeout, f"media did not flow (started from {first})", 0.2)


def press(page: Any, action: str, timeout: float = 20.0) -> None:
    """Press the button a person would press, once it is shown and enabled."""
    button = page.locator(f'[data-action="{action}"]')
    wait_until(
        lambda: button.is_visible() and button.is_enabled(),
        timeout,
        f"button {action} never became pressable",
    )
    button.click()


# ---- two-way lesson (issue 7) ----------------------------------------------------------

def tile_of(teacher: Any, name: str, timeout: float = 20.0) -> str:
    """The peer id of the teacher's grid tile showing the classroom ``name``."""
    tile = teacher.locator("[data-tile]", has_text=name)
    wait_until(lambda: tile.count() == 1, timeout, f"no tile for {name!r} on the teacher's grid")
    return str(tile.get_attribute("data-tile"))


def wait_stat_above(page: Any, key: str, floor: float, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until ``classroomStats()[key]`` is above ``floor``; return the stats."""

    seen: list[dict[str, Any]] = []

    def above() -> dict[str, Any] | None:
        now = stats(page)
        seen[:] = [now]
        return now if now.get(key, 0) > floor else None

    try:
        return wait_until(above, timeout, f"{key} never rose above {floor}", 0.15)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; stats: {seen[0] if seen else None}") from None


# In-page watcher: the wall-clock time (Date.now(), one clock for every page of the machine)
# at which a classroomStats() counter first rises above a floor; polled every 100 ms.
WATCH_RISE = """
([key, floor]) => {
  window.__rise = window.__rise || {};
  window.__rise[key] = null;
  const loop = () => window.classroomStats().then((s) => {
    if (s[key] > floor) { window.__rise[key] = Date.now(); return; }
    setTimeout(loop, 100);
  }, () => setTimeout(loop, 100));
  loop();
}
"""


def watch_rise(page: Any, key: str, floor: float) -> None:
    page.evaluate(WATCH_RISE, [key, floor])


def risen_at(page: Any, key: str, timeout: float) -> float:
    """Date.now() (ms) at which the watched counter rose; fails at the deadline."""
    try:
        page.wait_for_function(
            "(key) => window.__rise && window.__rise[key]", arg=key, timeout=timeout * 1000
        )
    except Exception as exc:  # playwright's TimeoutError: say what the page had instead
        raise AssertionError(f"{key} did not rise within {timeout}s: {stats(page)}") from exc
    return float(page.evaluate("(key) => window.__rise[key]", key))
