"""Every page at the four screen sizes (tests/e2e/layout.py SIZES), in Chinese and English:
no horizontal overflow or clipped text, no text below the WCAG contrast ratio, no control
drawn over. Screenshots of each go to tests/artifacts/screenshots/pages/ (docs/pages.md).

Cheap on purpose: one server, one browser, one context; each page is loaded once per
language and resized in place. A page is added with one row in PAGES."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.e2e import layout
from tests.e2e.conftest import ServerProcess
from tests.e2e.pages import missing_browser_reason

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

LESSON = "e2e-sizes"


class Page(NamedTuple):
    """A page: its path, the token it is opened with (role, lesson claim; None: no token),
    and a selector that is there once the page has drawn its first state."""

    path: str
    role: str | None
    lesson: str = LESSON
    ready: str = "body"
    owner: str = ""  # who fixes it (for the xfail reason)


PAGES: dict[str, Page] = {
    "class": Page(f"/class/{LESSON}", "classroom", ready='#status[data-state="waiting"]'),
    "teach": Page(f"/teach/{LESSON}", "teacher", ready="#on-air:not([hidden])", owner="C"),
    "answer": Page(f"/answer/{LESSON}", "student", ready="#quiz-answer .quiz-note", owner="C"),
    "report": Page(f"/report/{LESSON}", "teacher", owner="A"),
    "library": Page("/library", "teacher", owner="D"),
    "replay": Page("/replay/none", "teacher", owner="D"),
    "admin": Page("/admin", "admin", lesson="*", owner="H"),
    "room": Page("/room", None, owner="G"),
    "today": Page("/teach", "teacher", owner="G"),
    "join": Page("/join", None, owner="G"),
}

# pages whose owners have not fixed what this test finds yet: name -> reason
KNOWN: dict[str, str] = {}


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = ServerProcess([], Path(tempfile.mkdtemp(prefix="classroom-sizes-")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tab(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    yield ctx.new_page()
    ctx.close()


def url(srv: ServerProcess, page: Page, lang: str) -> str:
    query = "?lang=en" if lang == "en" else ""
    extra = {"name": "王老师", "school": "山村小学"} if page.role != "admin" else {}
    if page.role == "classroom":
        extra["name"] = "一年级1班"
    token = srv.token(page.role, page.lesson, **extra) if page.role else None
    return srv.base_url + page.path + query + (f"#token={token}" if token else "")


def cases() -> list[Any]:
    out = []
    for name in PAGES:
        marks = [pytest.mark.xfail(strict=False, reason=KNOWN[name])] if name in KNOWN else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", cases())
def test_page_at_every_size(srv: ServerProcess, tab: Any, name: str) -> None:
    started = time.monotonic()
    page = PAGES[name]
    found: dict[str, list[str]] = {}
    for lang in ("zh", "en"):
        tab.set_viewport_size({"width": 1920, "height": 1080})
        tab.goto(url(srv, page, lang))
        tab.wait_for_selector(page.ready, state="attached", timeout=15000)
        tab.evaluate("() => document.fonts.ready.then(() => null)")
        for size, (width, height) in layout.SIZES.items():
            tab.set_viewport_size({"width": width, "height": height})
            layout.settle(tab)
            layout.screenshot(tab, f"pages/{name}-{lang}-{size}")
            seen = layout.problems(tab, offscreen=False)  # one round trip per size
            if seen:
                found[f"{lang} {size}"] = seen
    print(f"{name}: 8 layouts checked in {time.monotonic() - started:.1f} s")
    report = "\n".join(f"  {where}:\n    " + "\n    ".join(p[:12]) for where, p in found.items())
    assert not found, f"/{name} at some sizes:\n{report}"
