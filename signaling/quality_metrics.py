"""Prometheus series of the quality the pages saw (docs/quality.md): one custom collector.

Every series is labelled by ``school`` and ``role`` only (``tier`` and ``kind`` where
named), never by a peer, a lesson or a person. The school label is bounded: the first
:data:`MAX_SCHOOLS` distinct schools a node sees keep their own value, every later one is
``other``; a token without a ``school`` claim is ``unknown``. Roles are the token's role
(a closed enum), tiers and kinds closed sets, so the series count is at most
``(MAX_SCHOOLS + 2) x roles x ...`` however many schools join.

A collector (not ``prometheus_client`` Counter/Histogram children) because a report
updates a dozen series: plain dict arithmetic per report, and the exposition is rendered
without ``_created`` series (half the lines, nothing an alert uses).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

MAX_SCHOOLS = 200
"""Distinct ``school`` label values kept per node; later schools are ``other``."""
MAX_SCHOOL_LEN = 64
OTHER, UNKNOWN = "other", "unknown"
RESULTS = ("accepted", "refused", "rate_limited")

JITTER_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0)
"""Seconds a sample waits in the jitter buffer (Chrome's target is ~40-150 ms)."""
RTT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0)

COUNTERS: dict[str, str] = {
    "frames_decoded": "classroom_client_frames_decoded",
    "frames_received": "classroom_client_frames_received",
    "freezes": "classroom_client_freezes",
    "freeze_seconds": "classroom_client_freeze_seconds",
    "audio_samples": "classroom_client_audio_samples",
    "audio_concealed_samples": "classroom_client_audio_concealed_samples",
}
_HELP = {
    "frames_decoded": "Video frames the pages decoded (inbound-rtp framesDecoded)",
    "frames_received": "Video frames the pages received (inbound-rtp framesReceived)",
    "freezes": "Video freezes the pages saw (inbound-rtp freezeCount)",
    "freeze_seconds": "Seconds of frozen video the pages saw (inbound-rtp totalFreezesDuration)",
    "audio_samples": "Audio samples the pages played out (inbound-rtp totalSamplesReceived)",
    "audio_concealed_samples": "Audio samples the pages concealed (inbound-rtp concealedSamples)",
}


class SchoolLabels:
    """The bounded ``school`` label: a school keeps its value once admitted."""

    def __init__(self, limit: int = MAX_SCHOOLS) -> None:
        self.limit = limit
        self._admitted: set[str] = set()

    def label(self, school: str | None) -> str:
        if not school:
            return UNKNOWN
        school = school[:MAX_SCHOOL_LEN]
        if school in self._admitted:
            return school
        if len(self._admitted) >= self.limit or school in (OTHER, UNKNOWN):
            return OTHER
        self._admitted.add(school)
        return school

    def __len__(self) -> int:
        return len(self._admitted)


_BOUNDS_TEXT: dict[tuple[float, ...], tuple[str, ...]] = {}


class _Histogram:
    __slots__ = ("bounds_text", "buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.bounds_text = _BOUNDS_TEXT.get(buckets) or _BOUNDS_TEXT.setdefault(
            buckets, (*map(_fmt, buckets), "+Inf"))
        self.counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip((*map(_fmt, self.buckets), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


def _fmt(bound: float) -> str:
    return repr(float(bound))


class QualityMetrics(Collector):
    """The aggregates behind the ``classroom_client_*`` series of one process."""

    def __init__(self, max_schools: int = MAX_SCHOOLS) -> None:
        self.schools = SchoolLabels(max_schools)
        self._lock = threading.Lock()  # scrapes may run in another thread (start_http_server)
        self.reports: dict[tuple[str, str], int] = {}
        self.counters: dict[str, dict[tuple[str, str], float]] = {k: {} for k in COUNTERS}
        self.lost: dict[tuple[str, str, str], float] = {}
        self.tier_seconds: dict[tuple[str, str], float] = {}
        self.jitter: dict[tuple[str, str, str], _Histogram] = {}
        self.rtt: dict[tuple[str, str], _Histogram] = {}
        self._label_text: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}

    # ingest ----------------------------------------------------------------------------
    def count_report(self, role: str, result: str) -> None:
        key = (role, result)
        with self._lock:
            self.reports[key] = self.reports.get(key, 0) + 1

    def add(self, school: str, role: str, *, counts: dict[str, float],
            lost: dict[str, float], jitter: dict[str, float | None], rtt: float | None,
            tier: str | None, tier_seconds: float) -> None:
        """One accepted report's deltas (``counts`` keyed as :data:`COUNTERS`, ``lost``
        and ``jitter`` by kind, ``jitter`` and ``rtt`` in seconds)."""
        key = (school, role)
        with self._lock:
            for name, value in counts.items():
                series = self.counters[name]
                series[key] = series.get(key, 0.0) + value
            for kind, value in lost.items():
                k3 = (school, role, kind)
                self.lost[k3] = self.lost.get(k3, 0.0) + value
            for kind, value in jitter.items():
                if value is not None:
                    k3 = (school, role, kind)
                    hist = self.jitter.get(k3)
                    if hist is None:
                        hist = self.jitter[k3] = _Histogram(JITTER_BUCKETS)
                    hist.observe(value)
            if rtt is not None:
                hist = self.rtt.get(key)
                if hist is None:
                    hist = self.rtt[key] = _Histogram(RTT_BUCKETS)
                hist.observe(rtt)
            if tier is not None and tier_seconds > 0:
                k2 = (school, tier)
                self.tier_seconds[k2] = self.tier_seconds.get(k2, 0.0) + tier_seconds

    # exposition ------------------------------------------------------------------------
    def describe(self) -> Iterable[Metric]:
        return list(self._families(empty=True))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._families(empty=False))

    def _families(self, empty: bool) -> Iterator[Metric]:
        reports = CounterMetricFamily("classroom_client_reports",
                                      "Quality reports from pages and clients, by result",
                                      labels=["role", "result"])
        if not empty:
            for (role, result), value in sorted(self.reports.items()):
                reports.add_metric([role, result], value)
        yield reports
        for name, metric in COUNTERS.items():
            family = CounterMetricFamily(metric, _HELP[name], labels=["school", "role"])
            if not empty:
                for labels, value in sorted(self.counters[name].items()):
                    family.add_metric(list(labels), value)
            yield family
        lost = CounterMetricFamily("classroom_client_packets_lost",
                                   "RTP packets the pages lost (inbound-rtp packetsLost)",
                                   labels=["school", "role", "kind"])
        tiers = CounterMetricFamily("classroom_client_tier_seconds",
                                    "Seconds classrooms spent on each tier, as they reported",
                                    labels=["school", "tier"])
        jitter = HistogramMetricFamily(
            "classroom_client_jitter_buffer_delay_seconds",
            "Mean jitter-buffer delay per report interval (jitterBufferDelay / "
            "jitterBufferEmittedCount)", labels=["school", "role", "kind"])
        rtt = HistogramMetricFamily("classroom_client_rtt_seconds",
                                    "Round-trip time the pages saw (candidate-pair "
                                    "currentRoundTripTime)", labels=["school", "role"])
        if not empty:
            for labels3, value in sorted(self.lost.items()):
                lost.add_metric(list(labels3), value)
            for labels2, value in sorted(self.tier_seconds.items()):
                tiers.add_metric(list(labels2), value)
            for labels3, hist in sorted(self.jitter.items()):
                jitter.add_metric(list(labels3), hist.cumulative(), hist.sum)
            for labels2, hist in sorted(self.rtt.items()):
                rtt.add_metric(list(labels2), hist.cumulative(), hist.sum)
        yield lost
        yield tiers
        yield jitter
        yield rtt

    def series_count(self) -> int:
        """Lines this collector adds to the exposition (for tests and the benchmark)."""
        with self._lock:
            per_hist = len(JITTER_BUCKETS) + 3, len(RTT_BUCKETS) + 3
            return (len(self.reports) + sum(len(s) for s in self.counters.values())
                    + len(self.lost) + len(self.tier_seconds)
                    + per_hist[0] * len(self.jitter) + per_hist[1] * len(self.rtt))

    # fast exposition -------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition of these series, as ``generate_latest`` would write them
        (same families, names, labels and values), in a few ms for thousands of series:
        label strings are built once per key, and nothing else is formatted per line but
        the value. The node's /metrics appends it to the registry's exposition."""
        out: list[str] = []
        with self._lock:
            self._text_counter(out, "classroom_client_reports",
                               "Quality reports from pages and clients, by result",
                               ("role", "result"), self.reports)
            for name, metric in COUNTERS.items():
                self._text_counter(out, metric, _HELP[name], ("school", "role"),
                                   self.counters[name])
            self._text_counter(out, "classroom_client_packets_lost",
                               "RTP packets the pages lost (inbound-rtp packetsLost)",
                               ("school", "role", "kind"), self.lost)
            self._text_counter(out, "classroom_client_tier_seconds",
                               "Seconds classrooms spent on each tier, as they reported",
                               ("school", "tier"), self.tier_seconds)
            self._text_histogram(out, "classroom_client_jitter_buffer_delay_seconds",
                                 "Mean jitter-buffer delay per report interval "
                                 "(jitterBufferDelay / jitterBufferEmittedCount)",
                                 ("school", "role", "kind"), self.jitter)
            self._text_histogram(out, "classroom_client_rtt_seconds",
                                 "Round-trip time the pages saw (candidate-pair "
                                 "currentRoundTripTime)", ("school", "role"), self.rtt)
        out.append("")
        return "\n".join(out).encode("utf-8")

    def _labels(self, names: tuple[str, ...], key: tuple[str, ...]) -> str:
        text = self._label_text.get((names, key))
        if text is None:
            pairs = sorted(zip(names, key, strict=True))
            text = ",".join(f'{n}="{_escape(v)}"' for n, v in pairs)
            self._label_text[(names, key)] = text
        return text

    def _text_counter(self, out: list[str], name: str, doc: str, names: tuple[str, ...],
                      series: dict[Any, float]) -> None:
        out.append(f"# HELP {name}_total {_escape_help(doc)}")
        out.append(f"# TYPE {name}_total counter")
        for key in sorted(series):
            out.append(f"{name}_total{{{self._labels(names, key)}}} {_value(series[key])}")

    def _text_histogram(self, out: list[str], name: str, doc: str, names: tuple[str, ...],
                        series: dict[Any, _Histogram]) -> None:
        out.append(f"# HELP {name} {_escape_help(doc)}")
        out.append(f"# TYPE {name} histogram")
        for key in sorted(series):
            hist = series[key]
            labels = self._labels(names, key)
            total = 0
            for bound, count in zip(hist.bounds_text, hist.counts, strict=True):
                total += count
                le = self._labels((*names, "le"), (*key, bound))
                out.append(f"{name}_bucket{{{le}}} {_value(total)}")
            out.append(f"{name}_count{{{labels}}} {_value(total)}")
            out.append(f"{name}_sum{{{labels}}} {_value(hist.sum)}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    return repr(float(v))


QUALITY = QualityMetrics()
"""The process's quality series. Not in prometheus_client's default registry (its
generic renderer takes ~20 us a line: 200 ms for 200 schools, on the event loop); the
node's ``/metrics`` appends :meth:`QualityMetrics.render` to the registry's exposition."""
