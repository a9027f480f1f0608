"""A student's phone (/answer, 390x844) in Chromium during a timed test (docs/pages.md).

The teacher is a plain socket from a helper page (open-test, close-round, reveal). On the
phone: the student is typing in one question while the answer to another is acknowledged,
and keeps text, focus and selection; after the reveal the phone shows the student's own
result (right of answered of all, the skipped question as not answered); no control is
covered and no text is under 4.5:1, at 390x844 and at 1366x768.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.layout import overflow, screenshot
from tests.e2e.pages import missing_browser_reason, wait_until
from tests.e2e.quiz_sockets import (
    SEND,
    field_state,
    layout_problems,
    open_room,
    open_sized,
    put_set,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QSET = {"format": "classroom-quiz", "version": 1, "title": "分数测验",
        "questions": [
            {"id": "q1", "type": "single", "text": "1/2 + 1/4 = ?",
             "options": ["1/6", "3/4", "2/6"], "answer": 1},
            {"id": "q2", "type": "fill", "text": "3/4 - 1/4 = ?（写成最简分数）",
             "answer": ["1/2"]},
            {"id": "q3", "type": "numeric", "text": "0.5 × 3 = ?", "answer": 1.5}]}

Q2_FIELD = '#quiz-answer [data-question="q2"] input.quiz-input'


@pytest.fixture(scope="module")
def phone_server() -> Iterator[ServerProcess]:
    srv = ServerProcess([], Path(tempfile.mkdtemp(prefix="classroom-phone-")))
    srv.start()
    yield srv
    srv.stop()


def test_phone_keeps_typing_across_an_ack_and_shows_own_result(phone_server, browser):
    srv, lesson = phone_server, "phone-1"
    put_set(srv, lesson, QSET)
    started = time.monotonic()
    helper = open_sized(browser, srv.base_url + "/healthz", (400, 300))
    open_room(helper, srv, lesson, "王老师", "teacher-1", role="teacher")
    phone = open_sized(browser, srv.page_url("answer", lesson, srv.token(
        "student", lesson, name="小明", school="山村小学", sub="stu-1")), (390, 844))
    wait_until(lambda: phone.evaluate("() => !!window.studentQuiz"), 20, "phone not loaded")
    wait_until(lambda: "小明" in phone.locator("#status").inner_text(), 20, "phone not welcomed")
    helper.evaluate(SEND, ["王老师", {"type": "open-test", "duration": 300,
                                   "question_ids": ["q1", "q2", "q3"]}])
    field = phone.locator('#quiz-answer [data-question="q2"] input.quiz-input')
    wait_until(lambda: field.count() == 1 and field.is_enabled(), 20, "test not shown")
    assert layout_problems(phone) == []

    # typing in q2 while q1 is sent and acknowledged: text, focus, selection kept
    field.click()
    field.type("1/")
    phone.evaluate("() => document.activeElement.setSelectionRange(1, 2)")
    phone.evaluate("""() => document.querySelector(
      '#quiz-answer [data-question="q1"] [data-action="answer"][data-option="1"]').click()""")
    q1 = phone.locator('#quiz-answer [data-question="q1"]')
    wait_until(lambda: "已提交 ✓" in q1.inner_text(), 10, "q1 not acknowledged")
    assert field_state(phone, Q2_FIELD) == {"focused": True, "value": "1/", "start": 1, "end": 2}
    assert q1.locator('[data-action="answer"]').first.is_disabled()

    # q2 finished and sent, q3 skipped; closed and revealed: the student's own result
    phone.evaluate("() => document.activeElement.setSelectionRange(2, 2)")
    field.type("2")
    phone.locator('#quiz-answer [data-question="q2"] [data-action="answer"]').click()
    q2 = phone.locator('#quiz-answer [data-question="q2"]')
    wait_until(lambda: "已提交 ✓" in q2.inner_text(), 10, "q2 not acknowledged")
    helper.evaluate(SEND, ["王老师", {"type": "close-round"}])
    helper.evaluate(SEND, ["王老师", {"type": "reveal"}])
    summary = phone.locator('[data-role="quiz-summary"]')
    wait_until(summary.is_visible, 10, "no result after the reveal")
    wait_until(lambda: "答对 2 题（已作答 2 题，共 3 题）" in summary.inner_text(), 10,
               "wrong result")
    text = summary.inner_text()
    assert "未作答 1 题" in text and "得分 2 / 3" in text, text
    assert "王老师" not in text and "排名" not in text  # nothing about anyone else
    screenshot(phone, "student-phone-revealed-390x844")
    assert layout_problems(phone) == []
    assert overflow(phone) == []
    phone.set_viewport_size({"width": 1366, "height": 768})
    screenshot(phone, "student-phone-revealed-1366x768")
    assert layout_problems(phone) == []
    print(f"\nphone test: {time.monotonic() - started:.1f} s")
    phone.context.close()
    helper.context.close()
