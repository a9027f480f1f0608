"""What the browser tests read off the pages: stats, status texts, waits with deadlines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

CHROMIUM = "/usr/bin/chromium"

# The classroom view's status line, in plain words (zh-CN, the default language).
CONNECTING = "正在连接…"
WAITING = "等待老师开始上课"
LIVE = "上课中"
RECONNECTING = "网络中断，正在重新连接…"
ENDED = "本节课已结束"
INVALID = "链接无效或已过期"
INCOMPLETE = "链接不完整"


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
    interval: float = 0.25,
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` at the
    deadline (showing the last value seen)."""
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

    return wait_until(grown, timeout, f"media did not flow (started from {first})", 0.5)


def press(page: Any, action: str, timeout: float = 20.0) -> None:
    """Press the button a person would press, once it is shown and enabled."""
    button = page.locator(f'[data-action="{action}"]')
    wait_until(
        lambda: button.is_visible() and button.is_enabled(),
        timeout,
        f"button {action} never became pressable",
    )
    button.click()
