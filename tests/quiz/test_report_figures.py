"""The learning report's figures for a scripted lesson with skips (tests/quiz/report_script.py):
unanswered counts as unanswered and against the score, every expected classroom and student
is listed, per-question figures over those who answered and over all, a question nobody
answered has no accuracy; and the same figures from a real server."""

from __future__ import annotations

import pytest

from signaling.quiz import questions as qmod
from signaling.quiz import scoring
from signaling.quiz.report import (
    build_report,
    expected_people,
    learner_report,
    register_timetable_source,
    timetable_classrooms,
)
from tests.helpers import start_server
from tests.quiz import report_script as script
from tests.quiz.conftest import report

QUESTIONS = {q["id"]: q for q in qmod.validate_set(script.QSET)["questions"]}
ROUND = {"round_id": "r1", "mode": "test", "questions": list(QUESTIONS.values()),
         "opened_at": 1000.0, "closes_at": 1120.0, "closed_at": 1100.0, "revealed_at": 1101.0}


def records() -> list[dict]:
    """The plan's answers as the quiz feature stores them (scored by scoring.py)."""
    out = []
    for i, (sub, qid, given) in enumerate(script.PLAN):
        q = QUESTIONS[qid]
        room = sub in script.ROOMS
        name, school = (script.ROOMS if room else script.STUDENTS)[sub]
        if "tally" in given:
            tally = scoring.normalize_tally(q, given["tally"])
            value, result = None, scoring.score_tally(q, tally)
        else:
            tally, value = None, scoring.normalize_answer(q, given["value"])
            result = scoring.score_answer(q, value)
        out.append({"answer_id": f"a{i}", "round_id": "r1", "question_id": qid, "mode": "test",
                    "responder": f"{'classroom' if room else 'student'}:{sub}",
                    "kind": "classroom" if room else "student", "sub": sub, "name": name,
                    "school": school, "value": value, "tally": tally,
                    "received_at": 1001.0 + i, "elapsed": 1.0 + i, "correct": result.correct,
                    "total": result.total, "score": result.score})
    return out


ROOMS = {sub: {"name": n, "school": s, "peer_id": f"p-{sub}"}
         for sub, (n, s) in script.ROOMS.items()}


def check_figures(rep: dict) -> None:
    """The figures report_script.py promises (shared by the unit and the server test)."""
    qs = {q["question_id"]: q for q in rep["questions"]}
    for qid, (responses, expected, accuracy, accuracy_all) in script.EXPECTED_QUESTIONS.items():
        q = qs[qid]
        assert (q["responses"], q["expected"]) == (responses, expected), qid
        assert q["unanswered"] == expected - responses
        assert q["accuracy"] == (pytest.approx(accuracy) if accuracy is not None else None), qid
        assert q["accuracy_all"] == (pytest.approx(accuracy_all) if accuracy_all is not None
                                     else None), qid
    assert qs["q1"]["unanswered_classrooms"] == ["二班"]
    assert qs["q5"]["unanswered_classrooms"] == ["一班", "二班"]
    people = {p["id"]: p for p in rep["classrooms"] + rep["students"]}
    assert set(people) == set(script.EXPECTED_PEOPLE)  # room-b listed though it never answered
    for sub, (answered, unanswered, score, ratio) in script.EXPECTED_PEOPLE.items():
        p = people[sub]
        assert (p["answered"], p["unanswered"], p["questions"]) == (answered, unanswered, 5), sub
        assert p["score"] == pytest.approx(score) and p["max_score"] == 5, sub
        assert p["score_ratio"] == pytest.approx(ratio), sub
    # s1: 4 right of 4 answered, but 4/5 = 80 % (not 100 %, not 5/5)
    assert people["s1"]["accuracy"] == 1.0 and people["s1"]["accuracy_all"] == 0.8
    assert people["room-b"]["accuracy"] is None and people["room-b"]["accuracy_all"] == 0
    for key, value in script.EXPECTED_TOTALS.items():
        assert rep["totals"][key] == pytest.approx(value), key
    # by school then name (code point order), never by score
    for listed in (rep["students"], rep["classrooms"]):
        assert listed == sorted(listed, key=lambda p: (p["school"], p["name"]))


def test_scripted_lesson_figures() -> None:
    rep = build_report("L", [ROUND], {"r1": records()}, rooms=ROOMS,
                       lesson_info={"title": script.TITLE, "teacher": script.TEACHER,
                                    "school": script.SCHOOL, "started_at": 1_764_660_000.0})
    check_figures(rep)
    assert rep["lesson_info"]["title"] == script.TITLE
    assert rep["lesson_info"]["teacher"] == script.TEACHER
    assert rep["lesson_info"]["date"] is not None
    schools = {s["school"]: s for s in rep["schools"]}
    # 山村小学: room-a (2 answered) + s1 (4) of 2 x 5
    assert (schools["山村小学"]["answers"], schools["山村小学"]["unanswered"]) == (6, 4)
    assert schools["河边小学"]["accuracy_all"] == pytest.approx(1 / 10)


def test_the_timetable_slots_classrooms_are_expected_too() -> None:
    slot = {"room-c": {"name": "三班", "school": "山村小学"}}
    rooms, students = expected_people(ROOMS, {"r1": records()}, slot)
    assert set(rooms) == {"room-a", "room-b", "room-c"} and set(students) == {"s1", "s2"}
    rep = build_report("L", [ROUND], {"r1": records()}, rooms=ROOMS, slot_classrooms=slot)
    room_c = next(c for c in rep["classrooms"] if c["id"] == "room-c")
    assert (room_c["answered"], room_c["unanswered"], room_c["score_ratio"]) == (0, 5, 0)
    q2 = next(q for q in rep["questions"] if q["question_id"] == "q2")
    assert (q2["expected"], q2["accuracy_all"]) == (5, pytest.approx(3 / 5))


async def test_timetable_hook_is_awaited() -> None:
    assert await timetable_classrooms("nothing-registered") == {}

    async def source(lesson: str) -> dict:
        return {"room-t": {"name": "T", "school": ""}} if lesson == "with-slot" else {}

    register_timetable_source(source)
    try:
        assert await timetable_classrooms("with-slot") == {"room-t": {"name": "T", "school": ""}}
    finally:
        from signaling.quiz import report as report_mod

        report_mod._SLOT_SOURCES.remove(source)


def test_a_learner_sees_only_themselves_with_their_skips() -> None:
    mine = [r for r in records() if r["sub"] == "s1"]
    rep = learner_report("L", [ROUND], {"r1": mine}, scope="student",
                         me=("s1", {"name": "小明", "school": "山村小学"}))
    assert [s["id"] for s in rep["students"]] == ["s1"] and rep["classrooms"] == []
    s1 = rep["students"][0]
    assert (s1["answered"], s1["unanswered"], s1["score_ratio"]) == (4, 1, 0.8)
    nobody = learner_report("L", [ROUND], {"r1": []}, scope="classroom",
                            me=("room-b", {"name": "二班", "school": "河边小学"}))
    assert nobody["classrooms"][0]["unanswered"] == 5 and nobody["students"] == []


async def test_the_server_reports_the_scripted_lesson() -> None:
    srv = await start_server()
    try:
        await script.run_script(srv)
        rep = await report(srv, lesson=script.LESSON)
        check_figures(rep)
        info = rep["lesson_info"]
        assert (info["title"], info["teacher"], info["school"]) == (
            script.TITLE, script.TEACHER, script.SCHOOL)
        assert info["date"] and info["started_at"]
        own = await report(srv, "student", lesson=script.LESSON, sub="s1", name="小明",
                           school="山村小学")
        assert [s["id"] for s in own["students"]] == ["s1"] and own["classrooms"] == []
        assert own["students"][0]["score_ratio"] == 0.8
    finally:
        await srv.close()
