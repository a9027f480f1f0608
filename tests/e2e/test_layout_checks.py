"""The layout checks of tests/e2e/layout.py find each defect on a static page, and pass
a clean one (so a green page test means something)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import layout

CLEAN = """
<!doctype html><html><body style="margin:0;background:#fff;color:#111;font-size:16px">
<main style="display:grid;grid-template-rows:1fr auto;height:100vh">
  <div id="stage" style="background:#000;color:#fff">
    <h1 id="q" style="font-size:8vh;margin:0">Question</h1>
    <div id="pip" style="width:10%;height:10%;background:#333"></div>
  </div>
  <nav style="display:flex;gap:8px;padding:8px">
    <button data-action="raise-hand">Raise hand</button>
    <button data-action="mute">Mute</button>
  </nav>
</main></body></html>
"""

BROKEN = """
<!doctype html><html><body style="margin:0;background:#fff;font-size:16px">
<div style="position:fixed;inset:0;background:#000;z-index:5"></div>
<button data-action="raise-hand">Raise hand</button>
<button data-action="far" style="position:absolute;top:2000px">Off screen</button>
<p style="color:#bbb">grey on white</p>
<p style="position:relative;z-index:6;color:#444;background:#000">grey on black</p>
<div style="width:3000px;height:10px"></div>
<span id="clip" style="display:block;width:40px;overflow:hidden;white-space:nowrap;
  position:relative;z-index:6;background:#fff;color:#000">a long label that is clipped</span>
</body></html>
"""


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 800, "height": 600})
    yield ctx.new_page()
    ctx.close()


def test_clean_page_passes(page: Any) -> None:
    page.set_content(CLEAN)
    assert layout.covered_controls(page) == []
    assert layout.overflow(page) == []
    assert layout.low_contrast(page) == []
    assert layout.font_fraction(page, "#q") == pytest.approx(0.08, abs=0.005)
    assert layout.area_fraction(page, "#pip", "#stage") < 0.02
    assert layout.screenshot(page, "layout-selftest").stat().st_size > 0


def test_each_check_fails_on_broken_page(page: Any) -> None:
    page.set_content(BROKEN)
    covered = layout.covered_controls(page)
    assert any("raise-hand" in c and "covered by div" in c for c in covered), covered
    assert any("far" in c and "off screen" in c for c in covered), covered
    over = layout.overflow(page)
    assert any(o.startswith("document 3000px wide") for o in over), over
    assert any("#clip" in o and "text clipped" in o for o in over), over
    low = layout.low_contrast(page)
    assert any("grey on white" in c for c in low), low
    assert any("grey on black" in c for c in low), low
    assert layout.area_fraction(page, "div", "body") > 0.9
    with pytest.raises(AssertionError):
        layout.font_fraction(page, "#nothing")
