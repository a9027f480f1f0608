"""The teacher console at real sizes in Chromium (docs/pages.md, "Teacher console").

Classrooms here are plain sockets opened from a helper page (no TV, no media): they fill
the roster and the grid, raise hands and answer, which is all the console needs to show.

* 1366x768 (zh): the grid, the hand queue and the live tally are inside the viewport
  together and the page does not scroll; no control covered, no text under 4.5:1; a
  half-typed question keeps its text, focus and selection while a tally and a roster
  update arrive; answers ticked as letters are stored as 0-based indexes; disabled
  buttons look and say disabled; every field has a <label for>; no roster cell wraps.
* 1920x1080 (en): the same regions in view, "1 student" (not "1 students").
* the socket lost (server killed): a fixed banner until it is back; after the end, links
  to the learning report and to the library, and the replay once it is packaged.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.layout import covered_controls, low_contrast, overflow, screenshot
from tests.e2e.pages import missing_browser_reason, press, wait_until
from tests.e2e.quiz_sockets import (
    SEND,
    field_state,
    get_set,
    layout_problems,
    open_room,
    open_sized,
    put_set,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

QSET = {"format": "classroom-quiz", "version": 1, "title": "分数",
        "questions": [
            {"id": "q1", "type": "single", "text": "1/2 + 1/4 = ?",
             "options": ["1/6", "3/4", "2/6"], "answer": 1},
            {"id": "q2", "type": "truefalse", "text": "1/3 > 1/4", "answer": True}]}

# Boxes of the console's regions against the viewport, and whether the page scrolls.
REGIONS = """(regions) => {
  const vw = innerWidth, vh = innerHeight, out = {};
  for (const [name, selectors] of Object.entries(regions)) {
    const el = selectors.map((q) => document.querySelector(q)).find(Boolean);
    const r = el.getBoundingClientRect();
    out[name] = { inside: r.top >= 0 && r.left >= 0 && r.bottom <= vh + 0.5 && r.right <= vw + 0.5
                  && r.height > 40, top: r.top, bottom: r.bottom, left: r.left, right: r.right };
  }
  out.scrolls = document.scrollingElement.scrollHeight > vh + 1 ||
    document.scrollingElement.scrollWidth > vw + 1;
  return out;
}"""

# Roster cells whose text takes more than one line.
WRAPPED = """() => [...document.querySelectorAll('#roster-table th, #roster-table td')]
.filter((c) => {
  const walker = document.createTreeWalker(c, NodeFilter.SHOW_TEXT);
  const tops = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(n);
    for (const r of range.getClientRects()) {
      if (r.width > 0) tops.add(Math.round(r.top / 4));
    }
  }
  return tops.size > 1;
}).map((c) => c.textContent)"""

# Visible form fields of the console without a <label for> naming them.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')].filter((f) => {
  if (f.type === 'hidden' || f.closest('[hidden]')) return false;
  return !f.id || !document.querySelector(`label[for="${CSS.escape(f.id)}"]`);
}).map((f) => f.outerHTML.slice(0, 80))"""


@pytest.fixture(scope="module")
def console_server() -> Iterator[ServerProcess]:
    srv = ServerProcess([], Path(tempfile.mkdtemp(prefix="classroom-console-")))
    srv.start()
    yield srv
    srv.stop()


def round_of(helper: Any, name: str) -> str:
    """The round id the classroom socket last heard of."""
    return str(helper.evaluate(
        "(n) => window.rooms[n].msgs.filter((m) => m.type === 'quiz-question')"
        ".pop().round.round_id",
        name))


def answer(helper: Any, name: str, round_id: str, value: Any, qid: str = "q1") -> None:
    helper.evaluate(SEND, [name, {"type": "quiz-answer", "answer_id": f"a{time.time_ns()}",
                                  "round_id": round_id, "question_id": qid, "value": value}])


# Each region's box: its data-region, else what the console had before regions.
REGION_SELECTORS = {
    "grid": ['[data-region="grid"]', ".grid-panel"],
    "hands": ['[data-region="hands"]', ".hands"],
    "tally": ['[data-region="tally"]', '[data-role="quiz-live"]'],
    "stage": ['[data-region="stage"]', ".stage"],
    "roster": ['[data-region="roster"]', ".roster"],
}


def in_view(page: Any) -> dict[str, Any]:
    return page.evaluate(REGIONS, REGION_SELECTORS)


def test_console_regions_typing_letters_at_1366(console_server, browser):
    srv, lesson = console_server, "console-1"
    put_set(srv, lesson, QSET)
    helper = open_sized(browser, srv.base_url + "/healthz", (400, 300))
    rooms = [("一年级1班", "room-1"), ("二年级2班", "room-2"), ("教学点A", "room-3")]
    for name, sub in rooms:
        open_room(helper, srv, lesson, name, sub)
    teacher = open_sized(browser, srv.page_url("teach", lesson, srv.token(
        "teacher", lesson, name="王老师", school="城区一小"), "?res=360"), (1366, 768))
    started = time.monotonic()
    wait_until(lambda: teacher.locator("[data-tile]").count() == 3, 20, "three tiles")
    wait_until(lambda: teacher.locator("#roster-body tr").count() == 3, 10, "three roster rows")
    push = teacher.locator('[data-action="push-question"][data-question="q1"]')
    wait_until(lambda: push.count() == 1, 20, "question set not shown")
    helper.evaluate(SEND, ["二年级2班", {"type": "raise-hand"}])
    wait_until(lambda: teacher.locator("[data-hand-item]").count() == 1, 10, "hand not queued")
    push.click()
    wait_until(lambda: teacher.locator('[data-role="quiz-live"] [data-question="q1"]').count() == 1,
               10, "round not shown in the tally")
    rid = wait_until(lambda: round_of(helper, "教学点A"), 10, "classroom heard no question")

    # the regions are all in view together, the page itself does not scroll
    boxes = in_view(teacher)
    assert not boxes.pop("scrolls"), boxes
    assert all(b["inside"] for b in boxes.values()), boxes
    assert teacher.locator("[data-hand-item] [data-action=call-on-stage]").is_visible()
    screenshot(teacher, "teacher-console-1366x768")
    assert covered_controls(teacher) == []
    assert low_contrast(teacher) == []
    assert overflow(teacher) == []
    assert teacher.evaluate(WRAPPED) == []
    assert teacher.evaluate(UNLABELLED) == []
    # disabled looks and says disabled (end before the start)
    end = teacher.locator('[data-action="end-lesson"]')
    assert end.is_disabled() and end.get_attribute("aria-disabled") == "true"
    look = "(b) => [getComputedStyle(b).backgroundColor, getComputedStyle(b).borderStyle, " \
        "getComputedStyle(b).cursor]"
    start = teacher.locator('[data-action="start-lesson"]')
    assert start.is_enabled() and start.get_attribute("aria-disabled") == "false"
    assert end.evaluate(look) == ["rgba(0, 0, 0, 0)", "dashed", "not-allowed"]
    assert start.evaluate(look)[1:] != ["dashed", "not-allowed"]

    # a half-typed question survives a tally update and a roster update
    field = teacher.locator('[data-role="new-text"]')
    field.click()
    field.type("下面哪个分数最大")
    teacher.evaluate("() => document.querySelector('[data-role=new-text]').setSelectionRange(2, 4)")
    answer(helper, "教学点A", rid, 1)
    total = teacher.locator('[data-role="quiz-live"] [data-role="answers-total"]')
    wait_until(lambda: total.inner_text().strip() == "1", 10, "tally not updated")
    open_room(helper, srv, lesson, "三年级1班", "room-4")
    wait_until(lambda: teacher.locator("#roster-body tr").count() == 4, 10, "roster not updated")
    wait_until(lambda: teacher.locator('[data-role="not-answered"]', has_text="三年级1班").count(),
               10, "tally of the new classroom")
    typed = field_state(teacher, '[data-role="new-text"]')  # the new question's text
    assert typed == {"focused": True, "value": "下面哪个分数最大",
                     "start": 2, "end": 4}

    # answers as letters: multiple choice B + D -> [1, 3]; single choice C -> 2
    teacher.locator('[data-role="new-type"]').select_option("multiple")
    teacher.locator('[data-role="new-options"]').fill("1/2\n2/3\n1/4\n3/4")
    teacher.locator('label[for="quiz-letter-B"]').click()
    teacher.locator('label[for="quiz-letter-D"]').click()
    assert not teacher.locator('[data-letter="E"]').is_visible()  # 4 options: A-D only
    press(teacher, "quiz-add")
    wait_until(lambda: len(get_set(srv, lesson)["questions"]) == 3, 10, "question not saved")
    teacher.locator('[data-role="new-text"]').fill("1/2 = ?")
    teacher.locator('[data-role="new-type"]').select_option("single")
    teacher.locator('[data-role="new-options"]').fill("0.2\n0.25\n0.5")
    teacher.locator('label[for="quiz-letter-C"]').click()
    press(teacher, "quiz-add")
    wait_until(lambda: len(get_set(srv, lesson)["questions"]) == 4, 10, "question not saved")
    added = get_set(srv, lesson)["questions"][2:]
    assert [(q["type"], q["text"], q["answer"]) for q in added] == [
        ("multiple", "下面哪个分数最大", [1, 3]), ("single", "1/2 = ?", 2)]
    # the store has it; the page shows it once the set's update reaches it
    q4 = teacher.locator('[data-question="q4"][data-action="push-question"]')
    wait_until(lambda: q4.count() == 1, 10, "the saved question is not in the list")
    # a phone-sized window: one column that scrolls; nothing covered, all readable
    teacher.set_viewport_size({"width": 390, "height": 844})
    assert layout_problems(teacher) == []
    screenshot(teacher, "teacher-console-390x844")
    print(f"\nconsole at 1366x768 and 390x844: {time.monotonic() - started:.1f} s")
    teacher.context.close()

    # 1920x1080 in English: the same regions in view; one student is "1 student"
    english = open_sized(browser, srv.page_url("teach", lesson, srv.token("teacher", lesson),
                                               "?res=360&lang=en"), (1920, 1080))
    wait_until(lambda: english.locator('[data-role="quiz-live"] [data-question="q1"]').count(),
               20, "round not shown in the English console")
    open_room(helper, srv, lesson, "小明", "stu-1", role="student")
    answer(helper, "小明", rid, 1)
    wait_until(lambda: "1 student" in english.locator('[data-role="quiz-live"]').inner_text(), 10,
               "the student's answer not counted")
    assert "1 students" not in english.locator('[data-role="quiz-live"]').inner_text()
    boxes = in_view(english)
    assert not boxes.pop("scrolls"), boxes
    assert all(b["inside"] for b in boxes.values()), boxes
    screenshot(english, "teacher-console-1920x1080-en")
    assert covered_controls(english) == []
    assert low_contrast(english) == []
    english.context.close()
    helper.context.close()


def test_console_lost_connection_banner_and_end_links(console_server, browser):
    srv, lesson = console_server, "console-2"
    token = srv.token("teacher", lesson, name="王老师", school="城区一小")
    teacher = open_sized(browser, srv.page_url("teach", lesson, token, "?res=360"), (1366, 768))
    started = time.monotonic()
    banner = teacher.locator("#conn-lost")
    wait_until(lambda: teacher.locator('[data-action="start-lesson"]').is_enabled(), 20,
               "teacher not welcomed")
    assert not banner.is_visible()

    srv.kill()
    try:
        wait_until(banner.is_visible, 10, "no banner while the server is down")
        assert banner.inner_text().strip() == "与服务器的连接已断开，正在重连…"
        assert banner.evaluate("(b) => getComputedStyle(b).position") == "fixed"
        assert low_contrast(teacher) == []
    finally:
        srv.start()
    wait_until(lambda: not banner.is_visible(), 20, "banner stayed after the reconnect")

    # a recorded lesson: after the end, the report, the library and then the replay
    wait_until(lambda: teacher.evaluate("() => window.classroomStats()")["connectionState"]
               == "connected", 30, "publish never connected")
    press(teacher, "start-lesson")
    wait_until(lambda: teacher.locator('[data-action="end-lesson"]').is_enabled(), 10, "not live")
    time.sleep(1)  # a second of media in the recording
    press(teacher, "end-lesson")
    box = teacher.locator("[data-lesson-end]")
    wait_until(box.is_visible, 10, "no links after the end")
    report = teacher.locator("#end-report").get_attribute("href") or ""
    assert report.startswith(f"/report/{lesson}#token=") and report.endswith(token), report
    library = teacher.locator("#end-library").get_attribute("href") or ""
    assert library == f"/library#token={token}", library
    replay = teacher.locator("#end-replay")
    wait_until(replay.is_visible, 45, "no replay link once the recording is packaged")
    assert (replay.get_attribute("href") or "").startswith("/replay/")
    screenshot(teacher, "teacher-console-ended-1366x768")
    assert covered_controls(teacher) == []
    assert low_contrast(teacher) == []
    print(f"\nbanner + end links: {time.monotonic() - started:.1f} s")
    teacher.context.close()


def test_console_shows_the_timetable_end_warning_until_the_end(console_server, browser):
    """The scheduler's ``lesson-ending`` (5 min before the automatic end, signaling/school/
    scheduler.py) becomes a bar on the console; the message is injected into the page's real
    socket (Playwright's WebSocket route), the rest of the traffic is the server's."""
    srv, lesson = console_server, "console-ending"
    routes: list[Any] = []

    def route(ws: Any) -> None:
        ws.connect_to_server()
        routes.append(ws)

    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        teacher = ctx.new_page()
        teacher.route_web_socket("**/ws", route)
        teacher.goto(srv.page_url("teach", lesson, srv.token("teacher", lesson), "?res=360"))
        wait_until(lambda: teacher.locator('[data-action="start-lesson"]').is_enabled(), 20,
                   "teacher not welcomed")
        bar = teacher.locator("[data-lesson-ending]")
        press(teacher, "start-lesson")
        wait_until(lambda: teacher.locator('[data-action="end-lesson"]').is_enabled(), 10,
                   "not live")
        assert not bar.is_visible()
        ends_at = time.time() + 300
        routes[-1].send(json.dumps({"type": "lesson-ending", "ends_at": ends_at,
                                    "seconds_left": 300}))
        wait_until(bar.is_visible, 5, "no bar for lesson-ending")
        hhmm = time.strftime("%H:%M", time.localtime(ends_at))
        assert bar.inner_text().strip() == f"课表时间已到，本节课将于 {hhmm} 自动结束"
        assert covered_controls(teacher, offscreen=False) == []
        press(teacher, "end-lesson")
        wait_until(lambda: not bar.is_visible(), 10, "the bar stayed after the end")
    finally:
        ctx.close()
