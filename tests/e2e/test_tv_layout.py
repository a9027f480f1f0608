"""The classroom TV (class.html) at 1920x1080 and 1366x768 in every state a lesson goes
through: no control or state notice drawn over, the split view filling the screen, the
share covered by one small corner, the quiz readable from the back row, dismissable,
hidden after the reveal, and a class answer sent only after a confirm.

One server and one browser for the module, one TV page resized in place (every check of a
state runs in one pass over the sizes, one evaluate for overflow/contrast/covered); the
teacher and a second classroom are plain sockets on a helper page (no media needed: the
layout is what is checked). The reveal's auto-hide is shortened to REVEAL_S through the
page constant window.CLASSROOM_REVEAL_SHOW_S (docs/page-hooks.md)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import layout
from tests.e2e.conftest import ServerProcess
from tests.e2e.pages import ENDED, LIVE, RECONNECTING, missing_browser_reason, status
from tests.e2e.pages import wait_until as _wait_until

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LESSON = "e2e-tv-layout"
TV_SIZES = ["1920x1080", "1366x768"]
QUESTION = {"id": "q1", "type": "single", "text": "1/2 + 1/4 = ?",
            "options": ["1/6", "3/4", "2/6", "1/8"], "answer": 1}

# sockets of the teacher and of other classrooms, opened from a page of the server's origin
SOCKETS = """
() => {
  window.socks = {};
  window.openSock = ([name, token, lesson]) => new Promise((resolve, reject) => {
    const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws");
    const sock = { ws, seen: [] };
    window.socks[name] = sock;
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      sock.seen.push(m);
      if (m.type === "welcome") resolve(m.peer_id);
    };
    ws.onclose = () => reject(new Error("closed"));
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token, lesson }));
    setTimeout(() => reject(new Error("no welcome")), 15000);
  });
  window.say = ([name, msg]) => window.socks[name].ws.send(JSON.stringify(msg));
}
"""

NOTICES = ".tv-notices > *, #status"
REVEAL_S = 2  # the TV's auto-hide after a reveal (6 s on a real TV)


def wait_until(condition: Any, timeout: float, message: str) -> Any:
    """pages.wait_until polling every 50 ms: each wait here is one cheap evaluate."""
    return _wait_until(condition, timeout, message, interval=0.05)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = ServerProcess([], Path(tempfile.mkdtemp(prefix="classroom-tv-")))
    server.start()
    yield server
    server.stop()


class Lesson:
    """The teacher's (and a second classroom's) sockets on a helper page."""

    def __init__(self, srv: ServerProcess, browser: Any) -> None:
        self.srv = srv
        self.ctx = browser.new_context()
        self.page = self.ctx.new_page()

    def open(self) -> str:
        """(Re)open both sockets; the second classroom's peer id."""
        self.page.goto(self.srv.base_url + "/healthz")
        self.page.evaluate(SOCKETS)
        self.page.evaluate("(a) => window.openSock(a)",
                           ["teacher", self.srv.token("teacher", LESSON, name="王老师"), LESSON])
        return str(self.page.evaluate("(a) => window.openSock(a)", [
            "room2", self.srv.token("classroom", LESSON, name="二班", school="山村小学",
                                    sub="room-2"), LESSON]))

    def say(self, msg: dict[str, Any]) -> None:
        self.page.evaluate("(a) => window.say(a)", ["teacher", msg])


@pytest.fixture(scope="module")
def lesson(srv: ServerProcess, browser: Any) -> Iterator[Lesson]:
    one = Lesson(srv, browser)
    yield one
    one.ctx.close()


@pytest.fixture(scope="module")
def tv(srv: ServerProcess, browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    ctx.add_init_script(f"window.CLASSROOM_REVEAL_SHOW_S = {REVEAL_S};")
    page = ctx.new_page()
    page.goto(srv.page_url("class", LESSON, srv.token(
        "classroom", LESSON, name="一班", school="山村小学", sub="room-1")))
    yield page
    ctx.close()


def at_sizes(tv: Any, state: str, *checks: Any) -> None:
    """Run each of ``checks`` at each TV size (one resize and one screenshot per size)."""
    for size in TV_SIZES:
        tv.set_viewport_size(dict(zip(("width", "height"), layout.SIZES[size], strict=True)))
        layout.settle(tv)
        layout.screenshot(tv, f"tv-{state}-{size}")
        for check in checks:
            check(size)


def nothing_covered(tv: Any, state: str, *more: Any) -> None:
    """No control or notice drawn over, no overflow, no low contrast; then ``more``."""
    def check(size: str) -> None:
        assert layout.problems(tv) == [], f"{state} at {size}"
        assert layout.covered(tv, NOTICES) == [], f"{state} at {size}: a notice is covered"
    at_sizes(tv, state, check, *more)


# the share of the screen the visible videos paint (object-fit contain leaves black bars;
# a video not playing yet is taken as 16:9, as a camera sends)
PAINTED = """
() => {
  let painted = 0;
  for (const v of document.querySelectorAll('video')) {
    const r = v.getBoundingClientRect();
    const gone = getComputedStyle(v).display === 'none' || v.closest('[hidden]');
    if (!r.width || !r.height || gone) continue;
    const ratio = v.videoWidth && v.videoHeight ? v.videoWidth / v.videoHeight : 16 / 9;
    let w = r.width, h = r.height;
    if (getComputedStyle(v).objectFit !== 'cover') {
      if (w / h > ratio) w = h * ratio; else h = w / ratio;
    }
    painted += w * h;
  }
  return painted / (innerWidth * innerHeight);
}
"""


def test_stage_split_fills_the_screen_and_hides_nothing(srv, lesson, tv) -> None:
    started = time.monotonic()
    wait_until(lambda: tv.evaluate("() => !!window.classroomQuiz"), 20, "TV not loaded")
    room2 = lesson.open()
    lesson.say({"type": "start-lesson"})
    wait_until(lambda: status(tv) == LIVE, 20, "lesson not live on the TV")
    lesson.say({"type": "call-on-stage", "peer_id": room2})
    wait_until(lambda: tv.locator("#stage-box").is_visible(), 10, "stage not shown")

    def fills(size: str) -> None:
        painted = tv.evaluate(PAINTED)
        assert painted >= 0.72, f"split view paints {painted:.0%} of the screen at {size}"
    nothing_covered(tv, "stage", fills)
    print(f"stage layout checked in {time.monotonic() - started:.1f} s")


def test_share_is_covered_by_one_small_corner(srv, lesson, tv) -> None:
    started = time.monotonic()
    lesson.say({"type": "share", "on": True})
    wait_until(lambda: tv.locator("#share-video").is_visible(), 10, "share not shown")
    pips = "#teacher-video, #stage-box, #self-box"

    def small(size: str) -> None:
        shown = tv.locator(pips).evaluate_all(
            "(els) => els.filter((e) => e.getBoundingClientRect().width > 0"
            " && getComputedStyle(e).display !== 'none').length")
        assert shown == 1, f"{shown} pictures over the share at {size}"
        covered = layout.area_fraction(tv, pips, "#share-video")
        assert covered <= 0.12, f"the share is {covered:.0%} covered at {size}"
    nothing_covered(tv, "share-stage", small)
    lesson.say({"type": "leave-stage"})
    wait_until(lambda: not tv.locator("#stage-box").is_visible(), 10, "stage still shown")
    nothing_covered(tv, "share", small)
    lesson.say({"type": "share", "on": False})
    wait_until(lambda: not tv.locator("#share-video").is_visible(), 10, "share still shown")
    print(f"share layout checked in {time.monotonic() - started:.1f} s")


def test_consent_bar_leaves_the_teacher_visible(tv) -> None:
    consent = tv.locator("#consent")
    if not consent.is_visible():
        pytest.skip("no recording consent asked on this server")

    def beside(size: str) -> None:
        overlap = layout.area_fraction(tv, "#consent", "#teacher-video")
        assert overlap == 0, f"the consent box covers {overlap:.0%} of the teacher at {size}"
    at_sizes(tv, "consent", beside)


def quiz(tv: Any) -> Any:
    return tv.locator("#quiz-class")


def test_quiz_readable_confirmed_dismissable_and_gone_after_reveal(srv, lesson, tv) -> None:
    started = time.monotonic()
    lesson.say({"type": "push-question", "question": QUESTION})
    option = tv.locator('#quiz-class [data-action="answer"][data-option="1"]')
    wait_until(lambda: option.is_visible(), 10, "question not shown")

    def readable(size: str) -> None:
        q = layout.font_fraction(tv, "#quiz-class .quiz-text")
        o = layout.font_fraction(tv, '#quiz-class [data-action="answer"]')
        assert q >= 0.06 and o >= 0.04, f"question {q:.1%}, options {o:.1%} of {size}"
    nothing_covered(tv, "quiz", readable)
    # a phone-sized window: big but within the screen, the panel scrolls by itself
    tv.set_viewport_size({"width": 390, "height": 844})
    layout.settle(tv)
    layout.screenshot(tv, "tv-quiz-390x844")
    assert layout.overflow(tv) == [] and layout.covered(tv, ".bar [data-action]") == []
    q = layout.font_fraction(tv, "#quiz-class .quiz-text")
    assert 0.03 <= q <= 0.07, f"question {q:.1%} of a phone's height"

    # a whole class's answer: one tap asks, confirm sends, cancel does not
    option.click()
    confirm = tv.locator('#quiz-class [data-action="confirm-answer"]')
    wait_until(lambda: confirm.is_visible(), 5, "no confirm step for the class's answer")
    nothing_covered(tv, "quiz-confirm")
    assert tv.evaluate("() => Object.keys(window.classroomQuiz.own).length") == 0, \
        "the answer went out before the confirm"
    tv.locator('#quiz-class [data-action="cancel-answer"]').click()
    wait_until(lambda: not confirm.is_visible(), 5, "cancel kept the confirm")
    assert tv.evaluate("() => Object.keys(window.classroomQuiz.pending).length") == 0
    option.click()
    confirm.click()
    wait_until(lambda: "✓" in quiz(tv).inner_text(), 10, "answer not acknowledged")

    # dismissed: the video comes back; the bar can show the question again
    tv.locator('[data-action="dismiss-quiz"]').click()
    wait_until(lambda: not quiz(tv).is_visible(), 5, "quiz not dismissed")
    show = tv.locator('[data-action="show-quiz"]')
    assert show.is_visible()
    nothing_covered(tv, "quiz-dismissed")
    show.click()
    wait_until(lambda: quiz(tv).is_visible(), 5, "quiz not shown again")

    # the reveal: a bold mark on the right answer, then the panel goes by itself
    lesson.say({"type": "reveal"})
    right = tv.locator("#quiz-class .right")
    wait_until(lambda: right.count() == 1, 10, "right answer not marked")
    assert "✓" in right.inner_text()
    border = right.evaluate("(e) => parseFloat(getComputedStyle(e).borderTopWidth)")
    assert border >= 4, f"right answer border {border}px"
    wait_until(lambda: not quiz(tv).is_visible(), REVEAL_S + 10, "quiz shown after the reveal")
    print(f"quiz checked in {time.monotonic() - started:.1f} s")


def test_reconnecting_and_ended_notices_stay_visible(srv, lesson, tv) -> None:
    started = time.monotonic()
    lesson.say({"type": "push-question", "question": QUESTION | {"id": "q2"}})
    wait_until(lambda: quiz(tv).is_visible(), 10, "question not shown")
    srv.kill()
    wait_until(lambda: status(tv) == RECONNECTING, 15, "TV not reconnecting")
    # the on-air badge does not claim "直播中" over the reconnecting notice
    lost = tv.evaluate("() => window.classroomOnAir()")
    assert lost["state"] == "lost" and lost["text"] == "连接中断", lost
    assert tv.locator("#on-air").inner_text().strip() == "连接中断"
    nothing_covered(tv, "reconnecting")
    srv.start()
    lesson.open()
    lesson.say({"type": "start-lesson"})
    lesson.say({"type": "push-question", "question": QUESTION | {"id": "q3"}})
    wait_until(lambda: status(tv) == LIVE and quiz(tv).is_visible(), 20, "not live again")
    assert tv.locator("#on-air").get_attribute("data-state") == "live", "badge not live again"
    lesson.say({"type": "end-lesson"})
    wait_until(lambda: status(tv) == ENDED, 15, "TV did not show the end")
    nothing_covered(tv, "ended")
    assert not quiz(tv).is_visible(), "the quiz stays over the ended lesson"
    print(f"reconnecting/ended checked in {time.monotonic() - started:.1f} s")
