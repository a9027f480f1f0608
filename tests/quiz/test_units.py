"""Pure quiz logic: question-set validation, normalization and scoring (with hypothesis)."""

from __future__ import annotations

import copy
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.quiz import questions as qmod
from signaling.quiz import scoring
from signaling.quiz.report import build_report, report_csv
from tests.quiz.conftest import SAMPLE_SET


def test_sample_set_round_trips():
    clean = qmod.validate_set(SAMPLE_SET)
    assert qmod.validate_set(qmod.export_set(clean)) == clean
    assert clean["questions"][2]["answer"] == [0, 1, 3]


def test_missing_ids_are_assigned_without_clashing():
    clean = qmod.validate_set({"questions": [
        {"type": "truefalse", "text": "a", "answer": True},
        {"id": "q1", "type": "truefalse", "text": "b", "answer": False}]})
    assert [q["id"] for q in clean["questions"]] == ["q2", "q1"]


def test_public_question_hides_the_key_until_reveal():
    q = qmod.validate_set(SAMPLE_SET)["questions"][0]
    hidden = qmod.public_question(q)
    assert "answer" not in hidden and "explanation" not in hidden and hidden["option_count"] == 3
    shown = qmod.public_question(q, revealed=True)
    assert shown["answer"] == 1 and shown["explanation"]


@pytest.mark.parametrize("mutate,path", [
    (lambda s: s["questions"][0].update(answer=True), "questions[0].answer"),
    (lambda s: s["questions"][0].update(options=["a"] * 11), "questions[0].options"),
    (lambda s: s["questions"][2].update(answer=[0, 0]), "questions[2].answer"),
    (lambda s: s["questions"][3].update(answer=["x" * 201]), "questions[3].answer"),
    (lambda s: s["questions"][4].update(answer=float("nan")), "questions[4].answer"),
    (lambda s: s["questions"][4].update(tolerance="0.1"), "questions[4].tolerance"),
    (lambda s: s["questions"][1].update(text=""), "questions[1].text"),
    (lambda s: s["questions"][1].update(text="x" * 2001), "questions[1].text"),
    (lambda s: s["questions"][1].update(points=True), "questions[1].points"),
    (lambda s: s["questions"][1].update(image="//evil.example/x.png"), "questions[1].image"),
    (lambda s: s.update(version=2), "version"),
    (lambda s: s.update(extra=1), "unknown"),
    (lambda s: s.update(questions=[{"type": "fill", "text": "x", "answer": "a"}] * 201),
     "questions"),
])
def test_bad_sets_name_the_field(mutate, path):
    bad = copy.deepcopy(SAMPLE_SET)
    mutate(bad)
    with pytest.raises(qmod.QuestionError) as err:
        qmod.validate_set(bad)
    assert path in str(err.value)


# --- normalization ---------------------------------------------------------------------------
@given(st.text(max_size=60))
def test_normalize_is_idempotent(text):
    once = scoring.normalize_text(text)
    assert scoring.normalize_text(once) == once


ascii_words = st.text(alphabet=string.ascii_letters + string.digits + "/", min_size=1,
                      max_size=12)


@given(st.lists(ascii_words, min_size=1, max_size=5), st.sampled_from(["", " ", "\t", "  "]),
       st.sampled_from(["", ".", "。", "!", "？"]))
def test_normalize_ignores_case_spacing_and_trailing_punctuation(words, pad, punct):
    plain = " ".join(words)
    noisy = pad + "  ".join(w.upper() for w in words) + punct + pad
    assert scoring.normalize_text(noisy) == scoring.normalize_text(plain)


@given(ascii_words)
def test_full_width_equals_half_width(word):
    full = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)
    assert scoring.normalize_text(full) == scoring.normalize_text(word)


@given(st.lists(st.text(min_size=1, max_size=30).filter(lambda s: s.strip()), min_size=1,
                max_size=5), st.data())
def test_every_accepted_fill_answer_scores(accepted, data):
    q = qmod.validate_question({"id": "f", "type": "fill", "text": "?", "answer": accepted})
    given_answer = data.draw(st.sampled_from(accepted))
    value = scoring.normalize_answer(q, given_answer)
    assert scoring.score_answer(q, value).score == q["points"]


# --- numeric -----------------------------------------------------------------------------
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(finite, st.floats(min_value=0, max_value=1e3), finite)
def test_numeric_tolerance_is_a_symmetric_band(target, tol, given_value):
    q = {"type": "numeric", "answer": target, "tolerance": tol, "points": 1}
    mirrored = 2 * target - given_value
    if abs(given_value - target) <= tol * 0.999:
        assert scoring.is_correct(q, given_value) and scoring.is_correct(q, mirrored)
    if abs(given_value - target) > tol * 1.001 + 1e-6 * max(1, abs(target)):
        assert not scoring.is_correct(q, given_value)


@given(finite)
def test_numeric_strings_parse_like_numbers(x):
    assert scoring.parse_number(repr(x)) == x
    assert scoring.parse_number(repr(x).replace(".", ",")) == x


# --- choices and tallies ---------------------------------------------------------------------
@given(st.integers(2, 10).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True),
    st.permutations(list(range(n))))))
def test_multiple_choice_order_does_not_matter(args):
    n, key, perm = args
    q = {"type": "multiple", "options": [str(i) for i in range(n)], "answer": sorted(key),
         "points": 3}
    shuffled = [perm[i] for i in range(n) if perm[i] in key]
    assert scoring.score_answer(q, scoring.normalize_answer(q, shuffled)).score == 3
    with pytest.raises(scoring.AnswerError):
        scoring.normalize_answer(q, [n])


@settings(max_examples=200)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, n - 1),
    st.dictionaries(st.integers(0, n - 1).map(str), st.integers(0, 1000), min_size=1))))
def test_tally_score_is_the_fraction_right(args):
    n, correct, tally = args
    q = {"type": "single", "options": [str(i) for i in range(n)], "answer": correct,
         "points": 2}
    if sum(tally.values()) == 0:
        with pytest.raises(scoring.AnswerError):
            scoring.normalize_tally(q, tally)
        return
    clean = scoring.normalize_tally(q, tally)
    result = scoring.score_tally(q, clean)
    assert result.total == sum(tally.values())
    assert result.correct == tally.get(str(correct), 0)
    assert 0 <= result.score <= 2 and result.fraction == pytest.approx(result.score / 2)


@given(st.one_of(st.booleans(), st.floats(), st.text(max_size=5), st.none(),
                 st.lists(st.integers(), max_size=3), st.integers(-5, 15)))
def test_single_choice_accepts_only_an_index_in_range(value):
    q = {"type": "single", "options": ["a", "b", "c"], "answer": 0, "points": 1}
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 3
    if ok:
        assert scoring.normalize_answer(q, value) == value
    else:
        with pytest.raises(scoring.AnswerError) as err:
            scoring.normalize_answer(q, value)
        assert err.value.code == "answer_invalid"


def test_report_from_records_and_csv():
    q = qmod.validate_set(SAMPLE_SET)["questions"][0]
    rnd = {"round_id": "r1", "mode": "practice", "questions": [q], "opened_at": 100.0}
    answers = [
        {"answer_id": "a1", "round_id": "r1", "question_id": "q1", "kind": "student",
         "sub": "s1", "name": "小明", "school": "A", "value": 1, "tally": None,
         "received_at": 103.0, "elapsed": 3.0, "correct": 1, "total": 1, "score": 2.0},
        {"answer_id": "a2", "round_id": "r1", "question_id": "q1", "kind": "classroom",
         "sub": "c1", "name": "一班", "school": "B", "value": None, "tally": {"0": 1, "1": 3},
         "received_at": 125.0, "elapsed": 25.0, "correct": 3, "total": 4, "score": 1.5},
    ]
    rep = build_report("L", [rnd], {"r1": answers})
    assert rep["questions"][0]["option_counts"] == [1, 4, 0]
    assert rep["questions"][0]["accuracy"] == 0.8
    assert [b["count"] for b in rep["answer_times"]["buckets"]][:5] == [1, 0, 0, 1, 0]
    assert rep["schools"][1]["school"] == "B" and rep["schools"][1]["accuracy"] == 0.75
    text = report_csv(rep)
    assert text.count("\n") == 3 and '"{""0"": 1, ""1"": 3}"' in text
