"""Layout checks for the Chromium tests: what a person at the screen would see wrong.

Small API, each a plain function on a Playwright ``page`` (sync API):

* ``covered_controls(page, selector="[data-action]") -> list[str]``: every visible control
  whose centre point ``document.elementFromPoint`` does not return the control itself (or
  a descendant): something else is drawn over it, so a tap would miss it. Controls
  outside the viewport count as covered (a TV has no scrolling for the back row);
  ``offscreen=False`` lets a scrolling page keep controls below the fold.
* ``covered(page, selector) -> list[str]``: the same check for any element (a notice).
* ``overflow(page) -> list[str]``: the document wider than the viewport, elements that
  stick out of it horizontally, and text containers that clip their text
  (``scrollWidth > clientWidth`` with hidden overflow).
* ``low_contrast(page, minimum=4.5) -> list[str]``: visible text whose colour against its
  effective background (ancestors walked up to the first opaque background; white at the
  top) is below the WCAG ratio; large text (>= 24px, or bold >= 18.66px) needs 3.0.
  Text over images/video (no opaque background up the tree) is compared against black
  if the nearest painted ancestor is a video/canvas, otherwise white.
* ``font_fraction(page, selector) -> float``: computed font-size of the first visible
  match / viewport height.
* ``area_fraction(page, selector, of) -> float``: visible area of ``selector`` (summed
  over visible matches) inside the box of ``of`` / area of ``of``.
* ``problems(page, selector, offscreen=True) -> list[str]``: the three checks above in
  one round trip, each finding prefixed "overflow: " / "contrast: " / "covered: ".
* ``settle(page)``: two animation frames (after a resize), instead of a fixed sleep.
* ``screenshot(page, name) -> Path``: ``<repo>/tests/artifacts/screenshots/<name>.png``.
* ``SIZES``: the four screen sizes every page is checked at.

Every description names the element (``tag#id.class[data-action]``) and its first text,
so a failing assertion says what to look at. Elements with ``hidden``, ``display:none``,
``visibility:hidden``, zero opacity or an empty box are not "visible".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"

SIZES: dict[str, tuple[int, int]] = {
    "1920x1080": (1920, 1080),
    "1366x768": (1366, 768),
    "1280x720": (1280, 720),
    "390x844": (390, 844),
}

# Shared page-side helpers: visibility and a readable name for an element.
_PRELUDE = """
const visible = (el) => {
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    if (e.hidden) return false;
    const s = getComputedStyle(e);
    if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) {
      return false;
    }
  }
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
};
const describe = (el) => {
  let d = el.tagName.toLowerCase();
  const id = el.getAttribute('id');  // not el.id: a form's input named "id" shadows it
  if (id) d += '#' + id;
  const cls = el.getAttribute('class');
  if (cls && cls.trim()) d += '.' + cls.trim().split(/\\s+/).join('.');
  const act = el.getAttribute && el.getAttribute('data-action');
  if (act) d += `[data-action=${act}]`;
  const text = (el.innerText || el.value || el.getAttribute('aria-label') || '')
    .trim().replace(/\\s+/g, ' ').slice(0, 40);
  return text ? `${d} "${text}"` : d;
};
"""

_COVERED_FN = """
([selector, offscreen]) => {
  const out = [];
  const vw = document.documentElement.clientWidth, vh = document.documentElement.clientHeight;
  for (const el of document.querySelectorAll(selector)) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    if (x < 0 || y < 0 || x >= vw || y >= vh) {
      if (!offscreen && x >= 0 && x < vw) continue;  // below the fold of a scrolling page
      out.push(`${describe(el)}: centre (${Math.round(x)},${Math.round(y)}) off screen`);
      continue;
    }
    const top = document.elementFromPoint(x, y);
    if (top === el || (top && el.contains(top))) continue;
    out.push(`${describe(el)}: covered by ${top ? describe(top) : 'nothing'}`);
  }
  return out;
}
"""

_OVERFLOW_FN = """
() => {
  const out = [];
  const root = document.documentElement;
  const vw = root.clientWidth;
  if (root.scrollWidth > vw + 1) {
    out.push(`document ${root.scrollWidth}px wide in a ${vw}px viewport`);
  }
  const sticking = new Set();
  for (const el of document.body.querySelectorAll('*')) {
    if (!visible(el)) continue;
    const s = getComputedStyle(el);
    if (s.position === 'fixed' && (el.tagName === 'VIDEO' || el.tagName === 'CANVAS')) continue;
    const r = el.getBoundingClientRect();
    // inside a horizontally scrolling ancestor it may stick out of the viewport by design
    let scroller = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const ps = getComputedStyle(p);
      if (['auto', 'scroll', 'hidden', 'clip'].includes(ps.overflowX)) {
        scroller = true; break;
      }
    }
    if (!scroller && (r.right > vw + 1 || r.left < -1)) {
      let inside = false;  // only the outermost element that sticks out is named
      for (let p = el.parentElement; p && !inside; p = p.parentElement) inside = sticking.has(p);
      sticking.add(el);
      if (inside) continue;
      out.push(`${describe(el)}: spans ${Math.round(r.left)}..${Math.round(r.right)} of ${vw}px`);
      continue;
    }
    const clipsX = ['hidden', 'clip'].includes(s.overflowX) || s.textOverflow === 'ellipsis';
    const hasText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (hasText && clipsX && el.scrollWidth > el.clientWidth + 1) {
      out.push(`${describe(el)}: text clipped (${el.scrollWidth}px in ${el.clientWidth}px)`);
    }
  }
  return out;
}
"""

_CONTRAST_FN = """
(minimum) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(parseFloat);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const over = (fg, bg) => {
    const a = fg[3];
    return [0, 1, 2].map((i) => fg[i] * a + bg[i] * (1 - a)).concat(1);
  };
  const background = (el) => {
    // layers from the element up to the first opaque one, composed bottom-up
    const layers = [];
    let base = [255, 255, 255, 1];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      if (e.tagName === 'VIDEO' || e.tagName === 'CANVAS' || e.tagName === 'IMG') {
        base = [0, 0, 0, 1]; break;
      }
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) {
        layers.push(c);
        if (c[3] >= 1) { base = null; break; }
      }
    }
    let bg = base || layers.pop();
    while (layers.length) bg = over(layers.pop(), bg);
    return bg;
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own && !(el.tagName === 'INPUT' && el.value)) continue;
    if (!visible(el)) continue;
    const s = getComputedStyle(el);
    const fg0 = parse(s.color);
    if (!fg0) continue;
    let opacity = 1;
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      opacity *= parseFloat(getComputedStyle(e).opacity);
    }
    const bg = background(el);
    const fg = over([fg0[0], fg0[1], fg0[2], fg0[3] * opacity], bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(s.fontSize);
    const bold = parseInt(s.fontWeight, 10) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? Math.min(3.0, minimum) : minimum;
    if (ratio + 1e-6 < need) {
      const under = bg.slice(0, 3).map(Math.round).join(', ');
      const why = `contrast ${ratio.toFixed(2)} < ${need} (${s.color} on rgb(${under}))`;
      out.push(`${describe(el)}: ${why}`);
    }
  }
  return out;
}
"""

_COVERED = _PRELUDE + _COVERED_FN
_OVERFLOW = _PRELUDE + _OVERFLOW_FN
_CONTRAST = _PRELUDE + _CONTRAST_FN
# the three in one round trip (a page checked at many sizes pays one evaluate per size)
_ALL = _PRELUDE + f"""
([selector, offscreen, minimum]) => ({{
  overflow: ({_OVERFLOW_FN})(),
  contrast: ({_CONTRAST_FN})(minimum),
  covered: ({_COVERED_FN})([selector, offscreen]),
}})
"""

_FONT = _PRELUDE + """
(selector) => {
  const el = [...document.querySelectorAll(selector)].find(visible);
  if (!el) return null;
  return parseFloat(getComputedStyle(el).fontSize) / window.innerHeight;
}
"""

_AREA = _PRELUDE + """
([selector, of]) => {
  const box = [...document.querySelectorAll(of)].find(visible);
  if (!box) return null;
  const b = box.getBoundingClientRect();
  let area = 0;
  for (const el of document.querySelectorAll(selector)) {
    if (!visible(el) || el === box) continue;
    const r = el.getBoundingClientRect();
    const w = Math.min(r.right, b.right) - Math.max(r.left, b.left);
    const h = Math.min(r.bottom, b.bottom) - Math.max(r.top, b.top);
    if (w > 0 && h > 0) area += w * h;
  }
  return area / (b.width * b.height);
}
"""


def covered_controls(page: Any, selector: str = "[data-action]", *,
                     offscreen: bool = True) -> list[str]:
    """Visible controls whose centre is not theirs (drawn over, or off screen).

    ``offscreen=False``: a control scrolled out of view above or below is not reported
    (pages that scroll); off to the side still is."""
    return list(page.evaluate(_COVERED, [selector, offscreen]))


def covered(page: Any, selector: str) -> list[str]:
    """Visible elements matching ``selector`` whose centre another element covers."""
    return list(page.evaluate(_COVERED, [selector, True]))


def overflow(page: Any) -> list[str]:
    """Horizontal overflow of the document or an element, and clipped text."""
    return list(page.evaluate(_OVERFLOW))


def low_contrast(page: Any, minimum: float = 4.5) -> list[str]:
    """Visible text below the WCAG contrast ratio (3.0 for large text)."""
    return list(page.evaluate(_CONTRAST, minimum))


def font_fraction(page: Any, selector: str) -> float:
    """Computed font-size of the first visible match over the viewport height."""
    value = page.evaluate(_FONT, selector)
    if value is None:
        raise AssertionError(f"no visible element matches {selector!r}")
    return float(value)


def area_fraction(page: Any, selector: str, of: str) -> float:
    """Share of the first visible ``of`` box covered by visible ``selector`` elements."""
    value = page.evaluate(_AREA, [selector, of])
    if value is None:
        raise AssertionError(f"no visible element matches {of!r}")
    return float(value)


def problems(page: Any, selector: str = "[data-action]", *, offscreen: bool = True,
             minimum: float = 4.5) -> list[str]:
    """``overflow``, ``low_contrast`` and ``covered_controls`` in one evaluate, each
    finding prefixed with its kind ("overflow: ...", "contrast: ...", "covered: ...")."""
    found = page.evaluate(_ALL, [selector, offscreen, minimum])
    return [f"{kind}: {p}" for kind in ("overflow", "contrast", "covered") for p in found[kind]]


def settle(page: Any) -> None:
    """Wait for two animation frames: a resize or a render has been laid out and painted."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot of the viewport as tests/artifacts/screenshots/<name>.png."""
    path = SCREENSHOTS / f"{name}.png"  # name may hold a subfolder: "pages/class-zh"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
