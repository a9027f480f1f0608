"""Practice in real browsers: the teacher pushes a question, two classroom TVs and a
student's phone answer with the `answer` buttons, the teacher's live tally counts them."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.e2e.pages import missing_browser_reason, wait_until

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

QSET = {"format": "classroom-quiz", "version": 1, "title": "分数",
        "questions": [{"id": "q1", "type": "single", "text": "1/2 + 1/4 = ?",
                       "options": ["1/6", "3/4", "2/6"], "answer": 1,
                       "explanation": "2/4 + 1/4 = 3/4"}]}

# the quiz panel of a classroom TV (class.js) or a phone (answer.js) is up
PAGE_LOADED = "() => !!(window.classroomQuiz || window.studentQuiz)"


def put_set(server, lesson):
    req = urllib.request.Request(
        f"{server.base_url}/api/lessons/{lesson}/quiz/set", data=json.dumps(QSET).encode(),
        method="PUT", headers={"Authorization": f"Bearer {server.token('teacher', lesson)}",
                               "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def count(page, option):
    loc = page.locator(f'[data-role="quiz-live"] [data-question="q1"] '
                       f'[data-option-count="{option}"]')
    return loc.inner_text().strip() if loc.count() else None


def test_push_answer_on_tv_and_phone_live_tally(server, open_page):
    lesson = "e2e-quiz"
    put_set(server, lesson)
    teacher = open_page(server.page_url("teach", lesson, server.token("teacher", lesson),
                                        "?res=360"))
    rooms = [open_page(server.page_url("class", lesson, server.token(
        "classroom", lesson, name=name, school="山村小学", sub=sub)))
        for name, sub in [("一班", "room-1"), ("二班", "room-2")]]
    phone = open_page(server.page_url("answer", lesson, server.token(
        "student", lesson, name="小明", sub="stu-1")))
    push = teacher.locator('[data-action="push-question"][data-question="q1"]')
    wait_until(lambda: push.count() == 1, 20, "question set not shown")
    # the teacher sees both classrooms as "not answered" once they are online
    for page in rooms + [phone]:
        wait_until(lambda p=page: p.evaluate(PAGE_LOADED), 20, "page not loaded")
    wait_until(lambda: teacher.locator('[data-action="start-lesson"]').is_enabled(), 20,
               "teacher not welcomed")
    push.click()

    picks = [(rooms[0], "#quiz-class", 1), (rooms[1], "#quiz-class", 0),
             (phone, "#quiz-answer", 1)]
    for page, root, option in picks:
        button = page.locator(f'{root} [data-action="answer"][data-option="{option}"]')
        wait_until(lambda b=button: b.count() == 1 and b.is_visible() and b.is_enabled(), 20,
                   "question not shown")
        assert "3/4" in page.locator(root).inner_text()
        button.click()
        if root == "#quiz-class":  # a TV answers for the whole class: it asks first
            page.locator(f'{root} [data-action="confirm-answer"]').click()
    for page, root, _ in picks:
        wait_until(lambda p=page, r=root: "✓" in p.locator(r).inner_text(), 20,
                   "answer not acknowledged")
        # the chosen option is locked after the ack: no second answer
        assert page.locator(f'{root} [data-action="answer"]').first.is_disabled()

    wait_until(lambda: count(teacher, 1) == "2" and count(teacher, 0) == "1"
               and count(teacher, 2) == "0", 20, "tally not updated")
    total = teacher.locator('[data-role="quiz-live"] [data-role="answers-total"]')
    assert total.inner_text().strip() == "3"
    table = teacher.locator('[data-role="classroom-table"]').inner_text()
    assert "一班" in table and "二班" in table
    not_answered = teacher.locator('[data-role="not-answered"]').inner_text()
    assert "一班" not in not_answered and "二班" not in not_answered

    teacher.locator('[data-action="reveal"]').click()
    for page, root, _ in picks:
        wait_until(lambda p=page, r=root: p.locator(f'{r} button.right').count() == 1, 20,
                   "reveal not shown")
    wait_until(lambda: phone.locator('#quiz-answer [data-role="result"]').count() == 1, 20,
               "student result not shown")
    assert "✓" in phone.locator('#quiz-answer [data-role="result"]').inner_text()
