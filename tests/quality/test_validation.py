"""Pure logic of quality reports (signaling/quality.py, quality_metrics.py): range checks,
growth against the interval, duplicates, resets, page reloads, bounded school labels."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from signaling.errors import ClassroomError, ErrorCode
from signaling.messages import Registry
from signaling.quality import (
    Baselines,
    MarkSmoother,
    QualityMark,
    QualityReport,
    mark_of,
    parse_report,
)
from signaling.quality_metrics import MAX_SCHOOLS, QualityMetrics, SchoolLabels

GOOD = {"epoch": "e1", "seq": 1, "interval_ms": 10000, "tier": "high", "video_tracks": 1,
        "audio_tracks": 1, "frames_received": 300, "frames_decoded": 298, "freezes": 1,
        "freeze_ms": 400, "video_lost": 3, "audio_samples": 480000, "audio_concealed": 960,
        "audio_lost": 1, "jitter_audio_ms": 60.0, "jitter_video_ms": 80.5, "rtt_ms": 12.5}


def report(**over):
    return parse_report({**GOOD, **over})


def refused(**over) -> str:
    with pytest.raises(ClassroomError) as info:
        report(**over)
    assert info.value.code == ErrorCode.BAD_MESSAGE
    return str(info.value)


def test_a_good_report_parses_in_seconds():
    typed = Registry([QualityReport]).decode(json.dumps({"type": "quality", **GOOD}))
    assert parse_report(typed.data) == report()
    r = report()
    assert r.rtt == pytest.approx(0.0125) and r.jitter_video == pytest.approx(0.0805)
    assert r.tier == "high"
    assert report(tier="audio").tier == "audio-only"  # the relay's name, exported as audio-only


@pytest.mark.parametrize("over, words", [
    ({"freezes": -1}, "negative"),
    ({"frames_decoded": -5}, "negative"),
    ({"freeze_ms": -0.5}, "negative"),
    ({"audio_concealed": 480001}, "ratio over 1"),
    ({"rtt_ms": 60001}, "rtt_ms"),
    ({"rtt_ms": -1}, "rtt_ms"),
    ({"jitter_audio_ms": 1e9}, "jitter_audio_ms"),
    ({"tier": "ultra"}, "tier"),
    ({"epoch": "bad epoch!"}, "epoch"),
    ({"seq": 0}, "seq"),
    ({"video_tracks": 500}, "video_tracks"),
])
def test_absurd_values_are_refused(over, words):
    assert words in refused(**over)


@pytest.mark.parametrize("frame", [
    '{"type": "quality", "epoch": "e", "seq": "1"}',  # a string count
    '{"type": "quality", "epoch": "e", "seq": 1, "freezes": 1.5}',  # a fractional count
    '{"type": "quality", "epoch": "e", "seq": 1, "freezes": true}',  # a bool is no count
    '{"type": "quality", "seq": 1}',  # no epoch
    '{"type": "quality", "epoch": "e", "seq": 1, "rtt_ms": "fast"}',
])
def test_wrong_types_are_refused_by_the_schema(frame):
    with pytest.raises(ClassroomError) as info:
        Registry([QualityReport, QualityMark]).decode(frame)
    assert info.value.code == ErrorCode.BAD_MESSAGE


def test_growth_is_judged_against_the_time_that_passed():
    b = Baselines()
    key = ("L", "room", "e1")
    first = b.delta(key, report(), now=100.0)
    assert first.values["frames_decoded"] == 298  # a page's first report counts from zero
    # 10 s later: 12 s of freezes on one track is longer than the interval
    with pytest.raises(ClassroomError, match="frozen longer than the interval"):
        b.delta(key, report(seq=2, freeze_ms=400 + 12_500), now=110.0)
    # the refused report did not move the baseline: a sane one still counts from seq 1's
    ok = b.delta(key, report(seq=3, freeze_ms=400 + 9_000, freezes=3), now=110.5)
    assert ok.values["freeze_ms"] == 9_000 and ok.values["freezes"] == 2
    assert ok.span == pytest.approx(10.5)
    # on a teacher's grid (9 video tracks) 9 tiles frozen for the interval are possible
    b.delta(("L", "t", "e"), report(video_tracks=9, freeze_ms=0), now=100.0)
    b.delta(("L", "t", "e"), report(seq=2, video_tracks=9, freeze_ms=80_000), now=110.0)


def test_more_concealed_than_played_in_the_interval_is_refused():
    b = Baselines()
    b.delta(("L", "r", "e"), report(), now=0.0)
    with pytest.raises(ClassroomError, match="ratio over 1"):
        # cumulative ratio still < 1, but over the interval 1000 played, 2000 concealed
        b.delta(("L", "r", "e"), report(seq=2, audio_samples=481000, audio_concealed=2960),
                now=10.0)


def test_lost_repeated_and_reloaded_reports():
    b = Baselines()
    key = ("L", "room", "e1")
    b.delta(key, report(frames_decoded=100, frames_received=100), now=0.0)
    # seq 2 was lost: seq 3's totals still carry its frames (no gap in the counters)
    d3 = b.delta(key, report(seq=3, frames_decoded=700, frames_received=700), now=20.0)
    assert d3.values["frames_decoded"] == 600 and d3.span == 20.0
    # seq 3 again (resent after a reconnect): accepted, adds nothing
    again = b.delta(key, report(seq=3, frames_decoded=700, frames_received=700), now=21.0)
    assert again.duplicate and again.values["frames_decoded"] == 0
    # the page reloads: a new epoch, seq 1, counting from zero again
    fresh = b.delta(("L", "room", "e2"), report(epoch="e2", frames_decoded=50), now=30.0)
    assert fresh.values["frames_decoded"] == 50
    # an epoch first seen at seq 7 (its earlier reports went to another node): a baseline
    late = b.delta(("L", "room", "e3"), report(epoch="e3", seq=7), now=30.0)
    assert late.values["frames_decoded"] == 0
    # counters that go backwards within an epoch: a reset, the new totals are the growth
    reset = b.delta(key, report(seq=4, frames_decoded=10, frames_received=10), now=31.0)
    assert reset.values["frames_decoded"] == 10


def test_baselines_are_bounded():
    b = Baselines(limit=100, ttl=60.0)
    for i in range(500):
        b.delta(("L", f"r{i}", "e"), report(), now=float(i) / 10)
    assert len(b) == 100
    b.delta(("L", "late", "e"), report(), now=1000.0)  # everyone else expired
    assert len(b) == 1


def test_marks():
    b = Baselines()
    b.delta(("L", "r", "e"), report(freezes=0, freeze_ms=0, audio_concealed=0), now=0.0)

    def mark(**over):
        r = report(seq=over.pop("seq"), **over)
        return mark_of(b.delta(("L", "r", "e"), r, now=10.0 * r.seq), r)

    assert mark(seq=2, freezes=0, freeze_ms=0, audio_concealed=0) == ("good", "")
    assert mark(seq=3, freezes=1, freeze_ms=300, audio_concealed=0) == ("fair", "freezes")
    assert mark(seq=4, freezes=3, freeze_ms=3300, audio_concealed=0) == ("poor", "freezes")
    assert mark(seq=5, freezes=3, freeze_ms=3300, audio_concealed=0, audio_samples=480000,
                tier="audio") == ("poor", "audio_only")


def test_school_labels_are_bounded():
    labels = SchoolLabels()
    assert labels.label("") == "unknown" and labels.label(None) == "unknown"
    names = [labels.label(f"school-{i}") for i in range(MAX_SCHOOLS + 300)]
    assert names[:MAX_SCHOOLS] == [f"school-{i}" for i in range(MAX_SCHOOLS)]
    assert set(names[MAX_SCHOOLS:]) == {"other"}
    assert labels.label("school-3") == "school-3"  # admitted schools keep their label
    assert labels.label("x" * 500) == "other"


def test_series_stay_bounded_and_carry_no_peer():
    metrics = QualityMetrics(max_schools=20)
    registry = CollectorRegistry()
    registry.register(metrics)

    def feed(schools: int) -> int:
        for i in range(schools):
            school = metrics.schools.label(f"s{i}")
            metrics.count_report("classroom", "accepted")
            metrics.add(school, "classroom", counts={"frames_decoded": 1.0, "freezes": 0.0},
                        lost={"audio": 0.0, "video": 1.0},
                        jitter={"audio": 0.05, "video": 0.09}, rtt=0.02,
                        tier="high", tier_seconds=10.0)
        return metrics.series_count()

    at_50 = feed(50)
    at_500 = feed(500)
    assert at_50 == at_500  # 20 schools + other, whatever joins later
    text = generate_latest(registry).decode()
    assert 'school="other"' in text and 'school="s19"' in text and 's20"' not in text
    assert "_created" not in text and "peer" not in text
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == at_500
    # the fast renderer writes what prometheus_client's would, sample for sample
    fast = metrics.render().decode()

    def samples(exposition: str) -> list[tuple]:
        return sorted((f.name, f.type, s.name, tuple(sorted(s.labels.items())), s.value)
                      for f in text_string_to_metric_families(exposition) for s in f.samples)

    assert samples(fast) == samples(text)


def test_labels_are_escaped_in_the_fast_renderer():
    metrics = QualityMetrics()
    school = metrics.schools.label('a "quoted" \\ school\nwith a newline')
    metrics.add(school, "classroom", counts={"freezes": 2.0}, lost={}, jitter={}, rtt=None,
                tier=None, tier_seconds=0.0)
    registry = CollectorRegistry()
    registry.register(metrics)
    assert metrics.render() == generate_latest(registry)


def test_a_mark_worsens_at_once_and_improves_slowly():
    s = MarkSmoother(improve_after=3)
    assert s.step("p", "good", "") == ("good", "")
    assert s.step("p", "poor", "freezes") == ("poor", "freezes")
    assert s.step("p", "fair", "rtt") is None  # better, 1 of 3
    assert s.step("p", "good", "") is None  # 2 of 3
    assert s.step("p", "poor", "audio_concealed") is None  # as bad as shown: the count restarts
    assert [s.step("p", "good", "") for _ in range(3)] == [None, None, ("good", "")]
    s.forget("p")
    assert s.shown("p") is None


def test_the_mark_event_matches_its_declared_type():
    registry = Registry([QualityReport, QualityMark])
    for mark in ({"peer_id": "classroom-1", "mark": "poor", "reason": "freezes"},
                 {"peer_id": "classroom-1", "mark": None, "reason": "left"}):
        assert registry.check_outgoing({"type": "quality-mark", **mark}) is None
    assert registry.check_outgoing({"type": "quality-mark", "peer_id": "p", "mark": "bad",
                                    "reason": ""}) is not None
