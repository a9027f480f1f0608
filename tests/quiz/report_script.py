"""A scripted lesson for the learning report (docs/practice-and-tests.md, "The report"):
five one-point questions in one test, two classrooms (one never answers), two pupils (one
skips a question, one skips two), and a question nobody answers. The figures it must give
are written out here once, for the unit tests (tests/quiz/test_report_figures.py) and the
Chromium test (tests/e2e/test_report_page.py).
"""

from __future__ import annotations

from typing import Any

from tests.quiz.conftest import answer, http

LESSON = "report-script"
TITLE, TEACHER, SCHOOL = "分数的认识", "王老师", "城区一小"

QSET = {
    "format": "classroom-quiz", "version": 1, "title": TITLE,
    "questions": [
        {"id": "q1", "type": "single", "text": "1/2 + 1/4 = ?",
         "options": ["1/6", "3/4", "2/6"], "answer": 1},
        {"id": "q2", "type": "truefalse", "text": "0.5 = 1/2", "answer": True},
        {"id": "q3", "type": "multiple", "text": "哪些等于 1/2?",
         "options": ["2/4", "3/6", "2/3", "5/10"], "answer": [0, 1, 3]},
        {"id": "q4", "type": "fill", "text": "一半写成分数是 ___", "answer": ["1/2"]},
        {"id": "q5", "type": "numeric", "text": "π ≈ ?", "answer": 3.14, "tolerance": 0.005},
    ],
}

ROOMS = {"room-a": ("一班", "山村小学"), "room-b": ("二班", "河边小学")}
"""room-b joins and never answers: listed, 0 answered."""
STUDENTS = {"s1": ("小明", "山村小学"), "s2": ("小红", "河边小学")}

# (responder sub, question, value or tally)
PLAN: list[tuple[str, str, dict[str, Any]]] = [
    ("room-a", "q1", {"tally": {"1": 8, "0": 2}}),   # 8 of 10 right
    ("room-a", "q2", {"value": 0}),                   # right
    ("s1", "q1", {"value": 1}), ("s1", "q2", {"value": 0}), ("s1", "q3", {"value": [0, 1, 3]}),
    ("s1", "q4", {"value": "1/2"}),                   # 4 right, skips q5: 4/5 = 80 %
    ("s2", "q1", {"value": 0}), ("s2", "q2", {"value": 0}),
    ("s2", "q4", {"value": "1/3"}),                   # 1 right of 3, skips q3 and q5
]
# nobody answers q5

EXPECTED_QUESTIONS = {  # question -> (responses, expected, accuracy, accuracy_all)
    "q1": (3, 4, 0.75, 0.45),      # judged 1 + 1 + 10, right 1 + 0 + 8; credit 1 + 0 + 0.8
    "q2": (3, 4, 1.0, 0.75),
    "q3": (1, 4, 1.0, 0.25),
    "q4": (2, 4, 0.5, 0.25),
    "q5": (0, 4, None, None),      # nobody answered: no accuracy (not 0 %)
}
EXPECTED_PEOPLE = {  # sub -> (answered, unanswered, score, score_ratio)
    "room-a": (2, 3, 1.8, 0.36),
    "room-b": (0, 5, 0.0, 0.0),
    "s1": (4, 1, 4.0, 0.8),
    "s2": (3, 2, 1.0, 0.2),
}
EXPECTED_TOTALS = {"answers": 9, "expected_answers": 20, "unanswered": 11,
                   "accuracy": round(14 / 18, 4), "accuracy_all": 0.34,
                   "classrooms": 2, "students": 2}


async def run_script(server: Any, lesson: str = LESSON) -> None:
    """Play the lesson on a real server (``base_url``, ``token(role, lesson, **claims)``):
    the lesson record (title, teacher, school), the set, a test of all five questions,
    the answers of :data:`PLAN`, the test closed and revealed."""
    from classroom_client import ClassroomClient

    status, body = await http(server, "POST", "/api/lessons", server.token("admin", lesson),
                              json={"id": lesson, "title": TITLE, "teacher": TEACHER,
                                    "school": SCHOOL})
    assert status == 201, body
    status, body = await http(server, "PUT", f"/api/lessons/{lesson}/quiz/set",
                              server.token("teacher", lesson), json=QSET)
    assert status == 200, body
    clients: dict[str, ClassroomClient] = {}
    try:
        teacher = clients["teacher"] = ClassroomClient(
            server.base_url, server.token("teacher", lesson, name=TEACHER, school=SCHOOL))
        await teacher.connect()
        await teacher.start_lesson()
        for sub, (name, school) in ROOMS.items():
            clients[sub] = ClassroomClient(server.base_url, server.token(
                "classroom", lesson, sub=sub, name=name, school=school))
        for sub, (name, school) in STUDENTS.items():
            clients[sub] = ClassroomClient(server.base_url, server.token(
                "student", lesson, sub=sub, name=name, school=school))
        for sub in [*ROOMS, *STUDENTS]:
            await clients[sub].connect()
        rnd = (await teacher.request({"type": "open-test", "duration": 120,
                                      "question_ids": [q["id"] for q in QSET["questions"]]},
                                     "quiz-test"))["round"]
        for sub, qid, given in PLAN:
            await answer(clients[sub], rnd, qid, **given)
        await teacher.request({"type": "close-round"}, "quiz-closed")
        await teacher.request({"type": "reveal"}, "quiz-reveal")
    finally:
        for client in clients.values():
            await client.close()
