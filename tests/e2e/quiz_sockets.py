"""Plain sockets and sized pages for the console and phone tests: a "classroom", "student"
or "teacher" is a WebSocket opened from a helper page (hello, pong), no TV and no media;
the question set goes in and out through the HTTP API."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.e2e.conftest import ServerProcess
from tests.e2e.layout import covered_controls, low_contrast

# Sockets of "classrooms" opened from a helper page: window.rooms[name] = {ws, msgs}.
OPEN_ROOM = """
([url, token, lesson, name]) => new Promise((resolve, reject) => {
  window.rooms = window.rooms || {};
  const ws = new WebSocket(url);
  const room = { ws, msgs: [] };
  window.rooms[name] = room;
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token, lesson }));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    room.msgs.push(m);
    if (m.type === "welcome") resolve(m.peer_id);
    if (m.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
  };
  ws.onerror = () => reject(new Error("socket error"));
})
"""
SEND = "([name, msg]) => window.rooms[name].ws.send(JSON.stringify(msg))"


def put_set(srv: ServerProcess, lesson: str, qset: dict[str, Any]) -> None:
    """PUT the lesson's question set."""
    req = urllib.request.Request(
        f"{srv.base_url}/api/lessons/{lesson}/quiz/set", data=json.dumps(qset).encode(),
        method="PUT", headers={"Authorization": f"Bearer {srv.token('teacher', lesson)}",
                               "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def get_set(srv: ServerProcess, lesson: str) -> dict[str, Any]:
    """The lesson's question set as stored."""
    req = urllib.request.Request(
        f"{srv.base_url}/api/lessons/{lesson}/quiz/set",
        headers={"Authorization": f"Bearer {srv.token('teacher', lesson)}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def field_state(page: Any, selector: str) -> dict[str, Any]:
    """A text field's focus, text and selection: what a re-render would wipe."""
    return page.evaluate("""(q) => {
  const f = document.querySelector(q);
  return { focused: document.activeElement === f, value: f.value,
           start: f.selectionStart, end: f.selectionEnd };
}""", selector)


def open_sized(browser: Any, url: str, size: tuple[int, int]) -> Any:
    """A page in its own context (own storage) with the viewport of a screen size."""
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = ctx.new_page()
    page.console_lines = []
    page.on("console", lambda m: page.console_lines.append(m.text))
    page.goto(url)
    return page


def open_room(helper: Any, srv: ServerProcess, lesson: str, name: str, sub: str,
              role: str = "classroom") -> str:
    """Open a socket named ``name`` (window.rooms[name]) and wait for its welcome."""
    token = srv.token(role, lesson, name=name, school="山村小学", sub=sub)
    ws_url = srv.base_url.replace("http", "ws") + "/ws"
    return str(helper.evaluate(OPEN_ROOM, [ws_url, token, lesson, name]))


def layout_problems(page: Any) -> list[str]:
    """Covered controls and low contrast over the whole page, scrolled a screen at a time
    (a control below the fold of a page that scrolls is not covered, it is further down)."""
    found: list[str] = []
    height = page.evaluate("() => innerHeight")
    total = page.evaluate("() => document.scrollingElement.scrollHeight")
    for y in range(0, max(1, total), max(1, int(height * 0.8))):
        page.evaluate("(y) => window.scrollTo(0, y)", y)
        found += [c for c in covered_controls(page) if not c.endswith("off screen")]
        found += low_contrast(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    return sorted(set(found))
