"""Question types and the question-set JSON format (import / export), validated strictly.

A question set::

    {"format": "classroom-quiz", "version": 1, "title": "...", "questions": [QUESTION, ...]}

A question (``type`` decides which fields it takes)::

    single     {"id", "type": "single",    "text", "options": [str x2..10], "answer": 0}
    multiple   {"id", "type": "multiple",  "text", "options": [...], "answer": [0, 2]}
    truefalse  {"id", "type": "truefalse", "text", "answer": true}
    fill       {"id", "type": "fill",      "text", "answer": ["1/2", "二分之一"]}
    numeric    {"id", "type": "numeric",   "text", "answer": 3.14, "tolerance": 0.01,
                "unit": "cm"}

Every question may carry ``points`` (default 1), ``explanation`` and ``image`` (a
``data:image/...`` URI or a same-origin path; pages load nothing from outside).
Unknown fields are refused, so a typo never silently drops an answer key.
"""

from __future__ import annotations

import math
import re
from typing import Any

FORMAT = "classroom-quiz"
VERSION = 1
TYPES = ("single", "multiple", "truefalse", "fill", "numeric")
CHOICE_TYPES = ("single", "multiple", "truefalse")

MAX_QUESTIONS = 200
MAX_TEXT = 2000
MAX_OPTION = 500
MIN_OPTIONS, MAX_OPTIONS = 2, 10
MAX_EXPLANATION = 4000
MAX_IMAGE = 60_000
MAX_ACCEPTED = 20
MAX_ANSWER_TEXT = 200  # a fill-in answer as typed
MAX_POINTS = 100.0
MAX_TITLE = 200
MAX_INT = 2**53 - 1  # integers a browser holds exactly (as signaling/protocol.py)
QUESTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_COMMON = {"id", "type", "text", "points", "explanation", "image"}
_FIELDS = {
    "single": _COMMON | {"options", "answer"},
    "multiple": _COMMON | {"options", "answer"},
    "truefalse": _COMMON | {"answer"},
    "fill": _COMMON | {"answer", "case_sensitive"},
    "numeric": _COMMON | {"answer", "tolerance", "unit"},
}


class QuestionError(ValueError):
    """A question or set that does not follow the format; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float; an int too large for a float (10**400) is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_INT if isinstance(value, int) else math.isfinite(value)


def _text(q: dict[str, Any], name: str, path: str, max_len: int, required: bool = True
          ) -> str | None:
    value = q.get(name)
    if value is None:
        if required:
            raise QuestionError(f"{path}.{name}", "is required")
        return None
    if not isinstance(value, str):
        raise QuestionError(f"{path}.{name}", "must be a string")
    if len(value) > max_len:
        raise QuestionError(f"{path}.{name}", f"longer than {max_len} characters")
    if required and not value.strip():
        raise QuestionError(f"{path}.{name}", "is empty")
    return value


def option_count(question: dict[str, Any]) -> int:
    """How many options a choice question offers (true/false: 0 = true, 1 = false)."""
    if question["type"] == "truefalse":
        return 2
    return len(question.get("options") or [])


def validate_question(raw: Any, path: str = "question", default_id: str | None = None
                      ) -> dict[str, Any]:
    """A clean copy of one question, or :class:`QuestionError`."""
    if not isinstance(raw, dict):
        raise QuestionError(path, "must be an object")
    qtype = raw.get("type")
    if qtype not in TYPES:
        raise QuestionError(f"{path}.type", f"must be one of {list(TYPES)}")
    unknown = sorted(set(raw) - _FIELDS[qtype])
    if unknown:
        raise QuestionError(path, f"unknown field(s) {unknown} for type {qtype}")
    qid = raw.get("id", default_id)
    if not isinstance(qid, str) or not QUESTION_ID.match(qid):
        raise QuestionError(f"{path}.id", "must be 1-64 letters, digits, '-' or '_'")
    out: dict[str, Any] = {"id": qid, "type": qtype,
                           "text": _text(raw, "text", path, MAX_TEXT)}
    points = raw.get("points", 1)
    if not _is_number(points) or not 0 < points <= MAX_POINTS:
        raise QuestionError(f"{path}.points", f"must be a number in (0, {MAX_POINTS:g}]")
    out["points"] = points
    explanation = _text(raw, "explanation", path, MAX_EXPLANATION, required=False)
    if explanation:
        out["explanation"] = explanation
    image = _text(raw, "image", path, MAX_IMAGE, required=False)
    if image:
        if not (image.startswith("data:image/") or
                (image.startswith("/") and not image.startswith("//"))):
            raise QuestionError(f"{path}.image",
                                "must be a data:image/ URI or a same-origin path (/...)")
        out["image"] = image
    answer = raw.get("answer")
    if qtype in ("single", "multiple"):
        options = raw.get("options")
        if not isinstance(options, list) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            raise QuestionError(f"{path}.options",
                                f"must be a list of {MIN_OPTIONS}-{MAX_OPTIONS} strings")
        for i, opt in enumerate(options):
            if not isinstance(opt, str) or not opt.strip() or len(opt) > MAX_OPTION:
                raise QuestionError(f"{path}.options[{i}]",
                                    f"must be a non-empty string of <= {MAX_OPTION}")
        out["options"] = list(options)
        n = len(options)
        if qtype == "single":
            if not _is_int(answer) or not 0 <= answer < n:
                raise QuestionError(f"{path}.answer", f"must be an option index 0..{n - 1}")
            out["answer"] = answer
        else:
            if (not isinstance(answer, list) or not answer
                    or not all(_is_int(a) and 0 <= a < n for a in answer)
                    or len(set(answer)) != len(answer)):
                raise QuestionError(f"{path}.answer",
                                    f"must be a non-empty list of distinct indexes 0..{n - 1}")
            out["answer"] = sorted(answer)
    elif qtype == "truefalse":
        if not isinstance(answer, bool):
            raise QuestionError(f"{path}.answer", "must be true or false")
        out["answer"] = answer
    elif qtype == "fill":
        accepted = [answer] if isinstance(answer, str) else answer
        if (not isinstance(accepted, list) or not 1 <= len(accepted) <= MAX_ACCEPTED
                or not all(isinstance(a, str) and a.strip() and len(a) <= MAX_ANSWER_TEXT
                           for a in accepted)):
            raise QuestionError(
                f"{path}.answer",
                f"must be a string or a list of 1-{MAX_ACCEPTED} non-empty strings "
                f"(<= {MAX_ANSWER_TEXT} characters each)")
        out["answer"] = list(accepted)
        case_sensitive = raw.get("case_sensitive", False)
        if not isinstance(case_sensitive, bool):
            raise QuestionError(f"{path}.case_sensitive", "must be true or false")
        if case_sensitive:
            out["case_sensitive"] = True
    else:  # numeric
        if not _is_number(answer):
            raise QuestionError(f"{path}.answer", "must be a finite number")
        tolerance = raw.get("tolerance", 0)
        if not _is_number(tolerance) or tolerance < 0:
            raise QuestionError(f"{path}.tolerance", "must be a finite number >= 0")
        out["answer"] = answer
        out["tolerance"] = tolerance
        unit = _text(raw, "unit", path, 32, required=False)
        if unit:
            out["unit"] = unit
    return out


def validate_set(raw: Any) -> dict[str, Any]:
    """A clean question set (import), or :class:`QuestionError` naming the bad field."""
    if not isinstance(raw, dict):
        raise QuestionError("", "a question set must be a JSON object")
    unknown = sorted(set(raw) - {"format", "version", "title", "questions"})
    if unknown:
        raise QuestionError("", f"unknown field(s) {unknown}")
    if raw.get("format", FORMAT) != FORMAT:
        raise QuestionError("format", f"must be {FORMAT!r}")
    if raw.get("version", VERSION) != VERSION:
        raise QuestionError("version", f"must be {VERSION}")
    title = raw.get("title", "")
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise QuestionError("title", f"must be a string of <= {MAX_TITLE} characters")
    questions = raw.get("questions")
    if not isinstance(questions, list):
        raise QuestionError("questions", "must be a list")
    if len(questions) > MAX_QUESTIONS:
        raise QuestionError("questions", f"more than {MAX_QUESTIONS} questions")
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, q in enumerate(questions):
        default_id = None
        if isinstance(q, dict) and "id" not in q:
            n = i + 1
            while f"q{n}" in seen or any(isinstance(o, dict) and o.get("id") == f"q{n}"
                                         for o in questions):
                n += 1
            default_id = f"q{n}"
        item = validate_question(q, f"questions[{i}]", default_id)
        if item["id"] in seen:
            raise QuestionError(f"questions[{i}].id", f"duplicate id {item['id']!r}")
        seen.add(item["id"])
        clean.append(item)
    return {"format": FORMAT, "version": VERSION, "title": title, "questions": clean}


def export_set(qset: dict[str, Any]) -> dict[str, Any]:
    """The JSON a teacher downloads; importing it gives the same set back."""
    return {"format": FORMAT, "version": VERSION, "title": qset.get("title", ""),
            "questions": [dict(q) for q in qset.get("questions", [])]}


def public_question(question: dict[str, Any], revealed: bool = False) -> dict[str, Any]:
    """What every page sees: no answer key until the reveal."""
    hidden = {"answer", "explanation", "tolerance", "case_sensitive"}
    out = {k: v for k, v in question.items() if revealed or k not in hidden}
    out["option_count"] = option_count(question) if question["type"] in CHOICE_TYPES else 0
    return out
