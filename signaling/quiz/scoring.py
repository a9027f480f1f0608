"""Normalization of answers and scoring, pure functions.

Answers as clients send them (``value`` of ``quiz-answer``):

    single, truefalse  option index (int; true/false: 0 = true, 1 = false)
    multiple           list of distinct option indexes
    fill               string (<= 200 characters)
    numeric            number, or a string holding one ("3,14" and full-width digits too)

A classroom may instead send ``tally`` (single / true-false only): ``{"0": 12, "1": 3}``,
how many of its students chose each option.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .questions import MAX_ANSWER_TEXT, option_count

MAX_TALLY_PER_OPTION = 1000
MAX_TALLY_TOTAL = 5000
_TRAILING_PUNCT = ".。!！?？,，;；:：、"
_SPACE = re.compile(r"\s+")


class AnswerError(ValueError):
    """An answer that does not fit its question; ``code`` is the error code to send."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Score:
    correct: int  # answers judged right (1 or 0; for a tally, students right)
    total: int  # answers judged (1; for a tally, students counted)
    score: float  # points earned (a tally earns points x the fraction right)

    @property
    def fraction(self) -> float:
        return self.correct / self.total if self.total else 0.0


def normalize_text(text: str, case_sensitive: bool = False) -> str:
    """Compare fill-in answers: NFKC (full-width -> half-width), case folded, spaces
    collapsed, trailing punctuation dropped. Idempotent."""
    out = text
    for _ in range(4):  # NFKC and casefold can feed each other; run to a fixed point
        prev = out
        out = unicodedata.normalize("NFKC", out)
        if not case_sensitive:
            out = out.casefold()
        out = _SPACE.sub(" ", out).strip().rstrip(_TRAILING_PUNCT).strip()
        if out == prev:
            break
    return out


def parse_number(value: Any) -> float:
    """A finite number from a number or a numeric string (commas as decimal point)."""
    if isinstance(value, bool):
        raise AnswerError("answer_invalid", "a number is expected")
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range (10**400)
            raise AnswerError("answer_invalid", "the number must be finite") from None
    elif isinstance(value, str):
        if len(value) > 64:
            raise AnswerError("answer_too_long", "a number of at most 64 characters")
        text = unicodedata.normalize("NFKC", value).strip().replace(",", ".").replace(" ", "")
        try:
            number = float(text)
        except ValueError:
            raise AnswerError("answer_invalid", "a number is expected") from None
    else:
        raise AnswerError("answer_invalid", "a number is expected")
    if not math.isfinite(number):
        raise AnswerError("answer_invalid", "the number must be finite")
    return number


def _index(value: Any, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerError("answer_invalid", "an option index (integer) is expected")
    if not 0 <= value < n:
        raise AnswerError("answer_invalid", f"option {value} is out of range 0..{n - 1}")
    return value


def normalize_answer(question: dict[str, Any], value: Any) -> Any:
    """The canonical stored form of ``value``, or :class:`AnswerError`."""
    qtype = question["type"]
    if qtype in ("single", "truefalse"):
        return _index(value, option_count(question))
    if qtype == "multiple":
        if not isinstance(value, list) or not value:
            raise AnswerError("answer_invalid", "a non-empty list of option indexes is expected")
        n = option_count(question)
        picked = [_index(v, n) for v in value]
        if len(set(picked)) != len(picked):
            raise AnswerError("answer_invalid", "an option is chosen twice")
        return sorted(picked)
    if qtype == "fill":
        if not isinstance(value, str):
            raise AnswerError("answer_invalid", "a text answer is expected")
        if len(value) > MAX_ANSWER_TEXT:
            raise AnswerError("answer_too_long",
                              f"the answer is longer than {MAX_ANSWER_TEXT} characters")
        if not value.strip():
            raise AnswerError("answer_invalid", "the answer is empty")
        return value.strip()
    if qtype == "numeric":
        return parse_number(value)
    raise AnswerError("answer_invalid", f"unknown question type {qtype}")


def normalize_tally(question: dict[str, Any], tally: Any) -> dict[str, int]:
    """A classroom's count per option: ``{"0": 12, "1": 3}`` (single / true-false)."""
    if question["type"] not in ("single", "truefalse"):
        raise AnswerError("answer_invalid", "a tally is only for single-choice or true/false")
    if not isinstance(tally, dict) or not tally:
        raise AnswerError("answer_invalid", "a tally is an object {option index: count}")
    n = option_count(question)
    out: dict[str, int] = {}
    for key, count in tally.items():
        # ASCII digits only: "²" and "①" are str.isdigit() but not int()-able, and a
        # 5,000-digit key is over int()'s limit.
        if (not isinstance(key, str) or not key.isascii() or not key.isdigit()
                or len(key) > 3 or not 0 <= int(key) < n):
            raise AnswerError("answer_invalid", f"tally option {str(key)[:16]!r} is out of range")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise AnswerError("answer_invalid", "tally counts are integers >= 0")
        if count > MAX_TALLY_PER_OPTION:
            raise AnswerError("answer_invalid", f"a tally count over {MAX_TALLY_PER_OPTION}")
        if count:
            out[str(int(key))] = out.get(str(int(key)), 0) + count
    total = sum(out.values())
    if total == 0:
        raise AnswerError("answer_invalid", "the tally counts nobody")
    if total > MAX_TALLY_TOTAL:
        raise AnswerError("answer_invalid", f"the tally counts over {MAX_TALLY_TOTAL}")
    return out


def correct_index(question: dict[str, Any]) -> int | None:
    if question["type"] == "single":
        return question["answer"]
    if question["type"] == "truefalse":
        return 0 if question["answer"] else 1
    return None


def is_correct(question: dict[str, Any], value: Any) -> bool:
    """Whether a normalized answer is right."""
    qtype = question["type"]
    if qtype in ("single", "truefalse"):
        return value == correct_index(question)
    if qtype == "multiple":
        return sorted(value) == sorted(question["answer"])
    if qtype == "fill":
        cs = bool(question.get("case_sensitive"))
        given = normalize_text(value, cs)
        return any(given == normalize_text(a, cs) for a in question["answer"])
    if qtype == "numeric":
        target = float(question["answer"])
        tol = float(question.get("tolerance", 0))
        return abs(float(value) - target) <= tol + 1e-9 * max(1.0, abs(target))
    return False


def score_answer(question: dict[str, Any], value: Any) -> Score:
    right = is_correct(question, value)
    return Score(int(right), 1, float(question["points"]) if right else 0.0)


def score_tally(question: dict[str, Any], tally: dict[str, int]) -> Score:
    total = sum(tally.values())
    right = tally.get(str(correct_index(question)), 0)
    points = float(question["points"]) * right / total if total else 0.0
    return Score(right, total, points)


def option_counts(question: dict[str, Any], value: Any = None,
                  tally: dict[str, int] | None = None) -> dict[int, int]:
    """What one answer adds to the per-option counts (choice questions)."""
    if tally is not None:
        return {int(k): v for k, v in tally.items()}
    if question["type"] in ("single", "truefalse"):
        return {int(value): 1}
    if question["type"] == "multiple":
        return {int(v): 1 for v in value}
    return {}
