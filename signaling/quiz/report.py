"""学情报告: the learning report of a lesson, built from its rounds and stored answers.

Pure: ``build_report(lesson, rounds, answers)`` -> JSON-able dict; ``report_csv`` -> text.
Which answers go in is the caller's choice (a classroom sees only its own, a student only
theirs); everything here is computed from what it is given. ``learner_report`` is the one
a classroom or a student gets: their own answers, and the key and judgement only of the
rounds the teacher revealed (a test's key must not leak while it is open). No report
ranks pupils: lists are sorted by school and name.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from .questions import CHOICE_TYPES, option_count
from .scoring import correct_index

# Answer-time buckets in seconds since the round opened (the last one is open-ended).
TIME_BUCKETS = (0, 5, 10, 20, 30, 60, 120, 300)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return round(ordered[index], 3)


def _bucket_counts(values: list[float]) -> list[dict[str, Any]]:
    counts = [0] * len(TIME_BUCKETS)
    for v in values:
        i = 0
        while i + 1 < len(TIME_BUCKETS) and v >= TIME_BUCKETS[i + 1]:
            i += 1
        counts[i] += 1
    out = []
    for i, lo in enumerate(TIME_BUCKETS):
        hi = TIME_BUCKETS[i + 1] if i + 1 < len(TIME_BUCKETS) else None
        out.append({"from_s": lo, "to_s": hi, "count": counts[i]})
    return out


def _acc() -> dict[str, Any]:
    return {"answers": 0, "judged": 0, "correct": 0, "score": 0.0, "max_score": 0.0}


def _add(acc: dict[str, Any], answer: dict[str, Any], points: float) -> None:
    acc["answers"] += 1
    acc["judged"] += answer["total"]
    acc["correct"] += answer["correct"]
    acc["score"] += answer["score"]
    acc["max_score"] += points


def _finish(acc: dict[str, Any]) -> dict[str, Any]:
    acc["accuracy"] = _ratio(acc["correct"], acc["judged"])
    acc["score"] = round(acc["score"], 3)
    acc["max_score"] = round(acc["max_score"], 3)
    return acc


def credit(answer: dict[str, Any]) -> float:
    """How much of one answer is right, 0..1: 1 or 0 for a pupil's answer, the fraction of
    its students right for a classroom's tally (``correct`` / ``total`` as scored)."""
    return answer["correct"] / answer["total"] if answer["total"] else 0.0


def expected_people(rooms: dict[str, dict[str, Any]] | None,
                    answers: dict[str, list[dict[str, Any]]],
                    slot_classrooms: dict[str, dict[str, Any]] | None = None
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Who was expected to answer, as ``(classrooms, students)`` (sub -> {name, school}):
    every classroom that joined the lesson (``rooms``: the quiz's rooms), every classroom
    of the lesson's timetable slot (``slot_classrooms``: :func:`timetable_classrooms`),
    and every classroom and student who answered anything. A joiner who never answered
    is listed with nothing answered, not left out."""
    classrooms: dict[str, dict[str, Any]] = {}
    students: dict[str, dict[str, Any]] = {}
    for source in (slot_classrooms or {}, rooms or {}):
        for sub, info in source.items():
            classrooms[sub] = {"name": info.get("name") or sub, "school": info.get("school", "")}
    for records in answers.values():
        for a in records:
            target = classrooms if a["kind"] == "classroom" else students
            if a["sub"] not in target or not target[a["sub"]].get("name"):
                target[a["sub"]] = {"name": a.get("name") or a["sub"],
                                    "school": a.get("school", "")}
    return classrooms, students


ExpectedSource = Callable[[str], Awaitable[dict[str, dict[str, Any]]]]
_SLOT_SOURCES: list[ExpectedSource] = []


def register_timetable_source(source: ExpectedSource) -> None:
    """TIMETABLE HOOK: the timetable (when it lands) registers ``source(lesson)`` -> the
    classrooms its slot sends the lesson to (sub -> {name, school}); the report then lists
    each of them as expected, answered or not."""
    _SLOT_SOURCES.append(source)


async def timetable_classrooms(lesson: str) -> dict[str, dict[str, Any]]:
    """The lesson's slot's receiving classrooms from every registered timetable source
    ({} while none is registered)."""
    out: dict[str, dict[str, Any]] = {}
    for source in _SLOT_SOURCES:
        out.update(await source(lesson))
    return out


def _person(sub: str, info: dict[str, Any], questions: int, max_score: float
            ) -> dict[str, Any]:
    return {"id": sub, "name": info.get("name") or sub, "school": info.get("school", ""),
            **_acc(), "questions": questions, "credit": 0.0, "max_score": max_score}


def _finish_person(p: dict[str, Any]) -> dict[str, Any]:
    """Unanswered counts as unanswered and against the score: ``score_ratio`` and
    ``accuracy_all`` are over every question of the report, ``accuracy`` over the answered."""
    max_score = p["max_score"]
    _finish(p)
    p["max_score"] = round(max_score, 3)
    p["answered"] = p["answers"]
    p["unanswered"] = max(0, p["questions"] - p["answers"])
    p["accuracy_all"] = _ratio(p["credit"], p["questions"])
    p["score_ratio"] = _ratio(p["score"], p["max_score"])
    p["credit"] = round(p["credit"], 4)
    return p


def lesson_title(info: dict[str, Any] | None, lesson: str) -> dict[str, Any]:
    """What the report's title shows: the lesson's title, date, teacher and school (the
    lesson record's; the id only when there is no title)."""
    info = info or {}
    when = info.get("started_at") or info.get("created_at")
    return {"id": lesson, "title": info.get("title") or "", "teacher": info.get("teacher") or "",
            "school": info.get("school") or "", "started_at": info.get("started_at"),
            "ended_at": info.get("ended_at"),
            "date": time.strftime("%Y-%m-%d", time.localtime(when)) if when else None}


def build_report(lesson: str, rounds: list[dict[str, Any]],
                 answers: dict[str, list[dict[str, Any]]], *, scope: str = "lesson",
                 rooms: dict[str, dict[str, Any]] | None = None,
                 slot_classrooms: dict[str, dict[str, Any]] | None = None,
                 expected: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]
                 | None = None,
                 lesson_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy per question, classroom, school and student; answer times; most missed.

    Every expected classroom and student (:func:`expected_people` of ``rooms``,
    ``slot_classrooms`` and the answers, or ``expected`` as given) is listed, and what
    they did not answer counts against them. Per question: ``accuracy`` over the answers
    given (students of a tally each count), ``accuracy_all`` over every expected
    responder (a classroom's tally gives its fraction right), ``unanswered`` and the
    classrooms that did not answer; a question nobody answered has no accuracy (None,
    not 0)."""
    exp_rooms, exp_students = expected if expected is not None else expected_people(
        rooms, answers, slot_classrooms)
    questions_total = sum(len(r["questions"]) for r in rounds)
    max_score = float(sum(float(q["points"]) for r in rounds for q in r["questions"]))
    classrooms = {sub: _person(sub, info, questions_total, max_score)
                  for sub, info in exp_rooms.items()}
    students = {sub: _person(sub, info, questions_total, max_score)
                for sub, info in exp_students.items()}
    expected_n = len(classrooms) + len(students)
    questions_out: list[dict[str, Any]] = []
    all_times: list[float] = []
    rows: list[dict[str, Any]] = []
    total = _acc()
    total_credit = 0.0
    for rnd in rounds:
        by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in answers.get(rnd["round_id"], []):
            by_question[a["question_id"]].append(a)
        for q in rnd["questions"]:
            qa = sorted(by_question.get(q["id"], []), key=lambda a: a["received_at"])
            stats = _acc()
            q_credit = 0.0
            options = [0] * option_count(q) if q["type"] in CHOICE_TYPES else None
            times = []
            answered_rooms: set[str] = set()
            for a in qa:
                points = float(q["points"])
                _add(stats, a, points)
                _add(total, a, points)
                q_credit += credit(a)
                times.append(a["elapsed"])
                if options is not None:
                    if a.get("tally") is not None:
                        for k, v in a["tally"].items():
                            options[int(k)] += v
                    elif isinstance(a.get("value"), list):
                        for v in a["value"]:
                            options[int(v)] += 1
                    else:
                        options[int(a["value"])] += 1
                target = classrooms if a["kind"] == "classroom" else students
                if a["kind"] == "classroom":
                    answered_rooms.add(a["sub"])
                entry = target.setdefault(a["sub"], _person(
                    a["sub"], {"name": a.get("name"), "school": a.get("school", "")},
                    questions_total, max_score))
                entry["answers"] += 1  # (its max_score is already every question's)
                entry["judged"] += a["total"]
                entry["correct"] += a["correct"]
                entry["score"] += a["score"]
                entry["credit"] += credit(a)
                rows.append({
                    "round_id": rnd["round_id"], "mode": rnd["mode"], "question_id": q["id"],
                    "kind": a["kind"], "id": a["sub"], "name": entry["name"],
                    "school": entry["school"], "answer": a.get("value"),
                    "tally": a.get("tally"), "correct": a["correct"], "judged": a["total"],
                    "score": round(a["score"], 3), "points": q["points"],
                    "answer_time_s": round(a["elapsed"], 3), "received_at": a["received_at"],
                    "answer_id": a["answer_id"],
                })
            total_credit += q_credit
            all_times.extend(times)
            _finish(stats)
            expected_here = max(expected_n, stats["answers"])
            item = {
                "round_id": rnd["round_id"], "mode": rnd["mode"], "question_id": q["id"],
                "type": q["type"], "text": q["text"], "points": q["points"],
                "responses": stats["answers"], "judged": stats["judged"],
                "correct": stats["correct"], "accuracy": stats["accuracy"],
                "expected": expected_here,
                "unanswered": expected_here - stats["answers"],
                "accuracy_all": _ratio(q_credit, expected_here) if stats["answers"] else None,
                "answered_ratio": _ratio(stats["answers"], expected_here),
                "unanswered_classrooms": sorted(
                    classrooms[sub]["name"] for sub in classrooms if sub not in answered_rooms),
                "option_counts": options,
                "correct_option": correct_index(q),
                "answer": q.get("answer"),
                "answer_time": {"p50_s": _percentile(times, 0.5),
                                "p90_s": _percentile(times, 0.9),
                                "max_s": round(max(times), 3) if times else None},
            }
            if q.get("options"):
                item["options"] = q["options"]
            questions_out.append(item)
    _finish(total)
    people = [*classrooms.values(), *students.values()]
    slots = len(people) * questions_total
    schools: dict[str, dict[str, Any]] = {}
    for p in people:
        acc = schools.setdefault(p["school"], {"school": p["school"], **_acc(), "credit": 0.0,
                                               "expected": 0, "questions": 0})
        for key in ("answers", "judged", "correct", "score", "max_score", "credit"):
            acc[key] += p[key]
        acc["expected"] += 1
        acc["questions"] += p["questions"]
    for acc in schools.values():
        _finish(acc)
        acc["unanswered"] = max(0, acc["questions"] - acc["answers"])
        acc["accuracy_all"] = _ratio(acc["credit"], acc["questions"])
        acc["score_ratio"] = _ratio(acc["score"], acc["max_score"])
        acc["credit"] = round(acc["credit"], 4)
    missed = sorted((q for q in questions_out if q["judged"]),
                    key=lambda q: (q["accuracy"], -q["judged"]))
    return {
        "lesson": lesson,
        "lesson_info": lesson_title(lesson_info, lesson),
        "scope": scope,
        "generated_at": time.time(),
        "totals": {"rounds": len(rounds), "questions": len(questions_out),
                   "answers": total["answers"], "judged": total["judged"],
                   "correct": total["correct"], "accuracy": total["accuracy"],
                   "classrooms": len(classrooms), "students": len(students),
                   "expected_answers": slots,
                   "unanswered": max(0, slots - total["answers"]),
                   "accuracy_all": _ratio(total_credit, slots)},
        "rounds": [_round_meta(r) for r in rounds],
        "questions": questions_out,
        # by school and name, never by score: no ranking of named pupils (or classrooms)
        "classrooms": sorted((_finish_person(c) for c in classrooms.values()),
                             key=lambda c: (c["school"], c["name"], c["id"])),
        "schools": sorted(schools.values(), key=lambda s: s["school"]),
        "students": sorted((_finish_person(s) for s in students.values()),
                           key=lambda s: (s["school"], s["name"], s["id"])),
        "most_missed": [{"round_id": q["round_id"], "question_id": q["question_id"],
                         "text": q["text"], "accuracy": q["accuracy"], "judged": q["judged"]}
                        for q in missed[:5] if q["accuracy"] is not None
                        and q["accuracy"] < 1],
        "answer_times": {"p50_s": _percentile(all_times, 0.5),
                         "p90_s": _percentile(all_times, 0.9),
                         "buckets": _bucket_counts(all_times)},
        "answers": rows,
    }


def _round_meta(r: dict[str, Any]) -> dict[str, Any]:
    return {"round_id": r["round_id"], "mode": r["mode"], "title": r.get("title", ""),
            "opened_at": r["opened_at"], "closes_at": r.get("closes_at"),
            "closed_at": r.get("closed_at"), "revealed_at": r.get("revealed_at"),
            "questions": len(r["questions"])}


def learner_report(lesson: str, rounds: list[dict[str, Any]],
                   answers: dict[str, list[dict[str, Any]]], *, scope: str,
                   me: tuple[str, dict[str, Any]] | None = None,
                   lesson_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A classroom's or a student's report (``answers`` already only theirs): everything
    judged comes from revealed rounds; answers to unrevealed rounds are listed as given,
    with ``correct``/``judged``/``score`` null, and no question of them carries its key.
    ``me`` (sub, {name, school}): the reader, listed (with what they skipped) even before
    any answer; nobody else is."""
    revealed = [r for r in rounds if r.get("revealed_at") is not None]
    expected: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]] = ({}, {})
    if me is not None:
        expected[0 if scope == "classroom" else 1][me[0]] = dict(me[1])
    report = build_report(lesson, revealed, answers, scope=scope, expected=expected,
                          lesson_info=lesson_info)
    report["rounds"] = [_round_meta(r) for r in rounds]
    report["totals"]["rounds"] = len(rounds)
    for rnd in rounds:
        if rnd.get("revealed_at") is not None:
            continue
        for a in sorted(answers.get(rnd["round_id"], []), key=lambda a: a["received_at"]):
            report["answers"].append({
                "round_id": rnd["round_id"], "mode": rnd["mode"],
                "question_id": a["question_id"], "kind": a["kind"], "id": a["sub"],
                "name": a.get("name") or a["sub"], "school": a.get("school", ""),
                "answer": a.get("value"), "tally": a.get("tally"), "correct": None,
                "judged": None, "score": None, "points": None,
                "answer_time_s": round(a["elapsed"], 3), "received_at": a["received_at"],
                "answer_id": a["answer_id"],
            })
    return report


CSV_FIELDS = ("round_id", "mode", "question_id", "kind", "id", "name", "school", "answer",
              "tally", "correct", "judged", "score", "points", "answer_time_s", "answer_id")


def report_csv(report: dict[str, Any]) -> str:
    """One row per answer (spreadsheet-friendly, UTF-8 with BOM for Excel)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    for row in report["answers"]:
        out = []
        for name in CSV_FIELDS:
            value = row.get(name)
            if isinstance(value, (list, dict)):
                value = json.dumps(value, ensure_ascii=False)
            out.append("" if value is None else value)
        writer.writerow(out)
    return "\ufeff" + buf.getvalue()
