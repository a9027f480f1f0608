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


def build_report(lesson: str, rounds: list[dict[str, Any]],
                 answers: dict[str, list[dict[str, Any]]], *, scope: str = "lesson"
                 ) -> dict[str, Any]:
    """Accuracy per question, classroom, school and student; answer times; most missed."""
    questions_out: list[dict[str, Any]] = []
    classrooms: dict[str, dict[str, Any]] = {}
    students: dict[str, dict[str, Any]] = {}
    schools: dict[str, dict[str, Any]] = defaultdict(_acc)
    all_times: list[float] = []
    rows: list[dict[str, Any]] = []
    total = _acc()
    for rnd in rounds:
        by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in answers.get(rnd["round_id"], []):
            by_question[a["question_id"]].append(a)
        for q in rnd["questions"]:
            qa = sorted(by_question.get(q["id"], []), key=lambda a: a["received_at"])
            stats = _acc()
            options = [0] * option_count(q) if q["type"] in CHOICE_TYPES else None
            times = []
            for a in qa:
                points = float(q["points"])
                _add(stats, a, points)
                _add(total, a, points)
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
                who = {"id": a["sub"], "name": a.get("name") or a["sub"],
                       "school": a.get("school", "")}
                target = classrooms if a["kind"] == "classroom" else students
                entry = target.setdefault(a["sub"], {**who, **_acc()})
                _add(entry, a, points)
                _add(schools[a.get("school", "")], a, points)
                rows.append({
                    "round_id": rnd["round_id"], "mode": rnd["mode"], "question_id": q["id"],
                    "kind": a["kind"], "id": a["sub"], "name": who["name"],
                    "school": who["school"], "answer": a.get("value"),
                    "tally": a.get("tally"), "correct": a["correct"], "judged": a["total"],
                    "score": round(a["score"], 3), "points": q["points"],
                    "answer_time_s": round(a["elapsed"], 3), "received_at": a["received_at"],
                    "answer_id": a["answer_id"],
                })
            all_times.extend(times)
            _finish(stats)
            item = {
                "round_id": rnd["round_id"], "mode": rnd["mode"], "question_id": q["id"],
                "type": q["type"], "text": q["text"], "points": q["points"],
                "responses": stats["answers"], "judged": stats["judged"],
                "correct": stats["correct"], "accuracy": stats["accuracy"],
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
    missed = sorted((q for q in questions_out if q["judged"]),
                    key=lambda q: (q["accuracy"], -q["judged"]))
    return {
        "lesson": lesson,
        "scope": scope,
        "generated_at": time.time(),
        "totals": {"rounds": len(rounds), "questions": len(questions_out),
                   "answers": total["answers"], "judged": total["judged"],
                   "correct": total["correct"], "accuracy": total["accuracy"],
                   "classrooms": len(classrooms), "students": len(students)},
        "rounds": [_round_meta(r) for r in rounds],
        "questions": questions_out,
        "classrooms": sorted((_finish(c) for c in classrooms.values()),
                             key=lambda c: (c["school"], c["name"])),
        "schools": sorted(({"school": s, **_finish(v)} for s, v in schools.items()),
                          key=lambda s: s["school"]),
        "students": sorted((_finish(s) for s in students.values()),
                           key=lambda s: (s["school"], s["name"])),
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
                   answers: dict[str, list[dict[str, Any]]], *, scope: str) -> dict[str, Any]:
    """A classroom's or a student's report (``answers`` already only theirs): everything
    judged comes from revealed rounds; answers to unrevealed rounds are listed as given,
    with ``correct``/``judged``/``score`` null, and no question of them carries its key."""
    revealed = [r for r in rounds if r.get("revealed_at") is not None]
    report = build_report(lesson, revealed, answers, scope=scope)
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
