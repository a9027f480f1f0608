"""Usage statistics (应用统计): the timetable's occurrences joined with the usage records.

Per occurrence that was due (its start has passed) and per school it touches:

- ``scheduled`` / ``held`` (the lesson went live; 开课率 ``held_rate`` = held/scheduled),
- ``on_time`` (went live at most :data:`ON_TIME_MINUTES` after the slot's start, or
  earlier; ``on_time_rate`` = on_time/held), ``minutes_live`` (live to end, or to now),
- ``classrooms_expected`` (the slot's receiving classrooms of that school) and
  ``classrooms_joined`` (of those, the ones that connected; 到课率 ``attendance_rate``),
  ``minutes_connected`` (every classroom of the school that connected),
- ``tier_minutes`` per tier and ``audio_only_minutes``,
- ``practice_rounds``, ``test_rounds``, ``classroom_answers``, ``student_answers``.

A lesson counts once per group (grouped by teacher it is one lesson even if it reaches
eight schools); classroom figures are the sum over the schools in the filter/scope only.
Only aggregates exist here: no per-student row, no ranking of pupils.

Speed: the per-occurrence facts are built once per ``SchoolDB.version()`` in a worker
thread (a district's term: ~40k occurrences); a query filters and sums them, also in a
thread, and its answer is cached for those facts. After a write the last facts keep
answering while newer ones are built (:class:`Stats`): figures lag by one rebuild.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from . import timetable as tt

ON_TIME_MINUTES = 5
GROUPS = ("school", "teacher", "subject", "cluster", "day")
COUNTS = ("scheduled", "held", "on_time", "classrooms_expected", "classrooms_joined",
          "practice_rounds", "test_rounds", "classroom_answers", "student_answers")
LESSON_FIGURES = ("scheduled", "held", "on_time", "minutes_live", "practice_rounds",
                  "test_rounds")


@dataclass
class Fact:
    """One due occurrence: its lesson-level figures and, per school, the classroom ones."""

    lesson_id: str
    date: str
    starts_at: float
    teacher_id: str
    subject: str
    cluster_id: str
    lesson: dict[str, float]
    schools: dict[str, dict[str, Any]]


@dataclass
class Facts:
    version: int
    built_at: float
    facts: list[Fact] = field(default_factory=list)  # sorted by date
    dates: list[str] = field(default_factory=list)


def merge_usage(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The per-node usage documents of each lesson, merged (times min/max, seconds sum)."""
    out: dict[str, dict[str, Any]] = {}
    for d in docs:
        lid = d.get("lesson_id")
        if not isinstance(lid, str):
            continue
        m = out.get(lid)
        if m is None:
            m = out[lid] = {"started_at": None, "ended_at": None, "classrooms": {},
                            "rounds": {}, "answers": {}, "quiz_read_at": -1.0}
        if d.get("started_at") is not None:
            m["started_at"] = d["started_at"] if m["started_at"] is None else min(
                m["started_at"], d["started_at"])
        if d.get("ended_at") is not None:
            m["ended_at"] = d["ended_at"] if m["ended_at"] is None else max(
                m["ended_at"], d["ended_at"])
        for sub, r in (d.get("classrooms") or {}).items():
            t = m["classrooms"].setdefault(sub, {"school": r.get("school", ""), "seconds": 0.0,
                                                 "tiers": {}})
            t["seconds"] += float(r.get("seconds") or 0)
            for tier, s in (r.get("tiers") or {}).items():
                t["tiers"][tier] = t["tiers"].get(tier, 0.0) + float(s)
        if (d.get("quiz_read_at") or 0) > m["quiz_read_at"]:
            m["quiz_read_at"] = d.get("quiz_read_at") or 0
            m["rounds"] = d.get("rounds") or {}
            m["answers"] = d.get("answers") or {}
        elif not m["rounds"] and d.get("rounds"):
            m["rounds"] = d["rounds"]
    return out


def build_facts(version: int, slots: dict[str, dict[str, Any]],
                terms: dict[str, dict[str, Any]], classrooms: dict[str, dict[str, Any]],
                usage_docs: list[dict[str, Any]], tz: str, now: float) -> Facts:
    """Every due occurrence of every term with its figures (CPU only: run in a thread)."""
    usage = merge_usage(usage_docs)
    school_of = {cid: c.get("school_id", "") for cid, c in classrooms.items()}
    facts: list[Fact] = []
    for slot in slots.values():
        term = terms.get(slot["term_id"])
        for day in tt.slot_dates(slot, term):
            occ = tt.occurrence(slot, day, tz)
            if occ.starts_at > now:
                continue
            facts.append(_fact(slot, occ, usage.get(occ.lesson_id), school_of, now))
    facts.sort(key=lambda f: (f.date, f.starts_at))
    return Facts(version, now, facts, [f.date for f in facts])


def _fact(slot: dict[str, Any], occ: Any, u: dict[str, Any] | None,
          school_of: dict[str, str], now: float) -> Fact:
    started = u.get("started_at") if u else None
    ended = u.get("ended_at") if u else None
    held = started is not None
    live = max(0.0, (ended or now) - started) / 60 if held else 0.0
    rounds = (u or {}).get("rounds") or {}
    lesson = {"scheduled": 1, "held": int(held),
              "on_time": int(held and started <= occ.starts_at + ON_TIME_MINUTES * 60),
              "minutes_live": live, "practice_rounds": rounds.get("practice", 0),
              "test_rounds": rounds.get("test", 0)}
    schools: dict[str, dict[str, Any]] = {}

    def of(school: str) -> dict[str, Any]:
        s = schools.get(school)
        if s is None:
            s = schools[school] = {"classrooms_expected": 0, "classrooms_joined": 0,
                                   "minutes_connected": 0.0, "tier_minutes": {},
                                   "classroom_answers": 0, "student_answers": 0}
        return s

    of(school_of.get(slot["main_classroom_id"], ""))
    rooms = (u or {}).get("classrooms") or {}
    for cid in slot.get("receiving_classroom_ids", ()):
        s = of(school_of.get(cid, ""))
        s["classrooms_expected"] += 1
        if cid in rooms and rooms[cid]["seconds"] > 0:
            s["classrooms_joined"] += 1
    for sub, r in rooms.items():
        school = school_of.get(sub) or r.get("school") or ""
        if school not in schools:
            continue  # a classroom of a school the lesson does not involve
        s = schools[school]
        s["minutes_connected"] += r["seconds"] / 60
        for tier, sec in r["tiers"].items():
            s["tier_minutes"][tier] = s["tier_minutes"].get(tier, 0.0) + sec / 60
    answers = (u or {}).get("answers") or {}
    for sub, n in (answers.get("classrooms") or {}).items():
        school = school_of.get(sub, "")
        if school in schools:
            schools[school]["classroom_answers"] += n
    for school, n in (answers.get("students") or {}).items():
        if school in schools:
            schools[school]["student_answers"] += n
    return Fact(occ.lesson_id, occ.date, occ.starts_at, slot["teacher_id"], slot["subject"],
                slot.get("cluster_id", ""), lesson, schools)


@dataclass(frozen=True)
class Query:
    date_from: str | None = None
    date_to: str | None = None
    school: str | None = None
    teacher: str | None = None
    subject: str | None = None
    cluster: str | None = None
    group_by: str | None = None


def _empty() -> dict[str, Any]:
    return {**{k: 0 for k in COUNTS}, "minutes_live": 0.0, "minutes_connected": 0.0,
            "tier_minutes": {}}


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    def rate(a: str, b: str) -> float | None:
        return round(row[a] / row[b], 4) if row[b] else None

    row["held_rate"] = rate("held", "scheduled")
    row["on_time_rate"] = rate("on_time", "held")
    row["attendance_rate"] = rate("classrooms_joined", "classrooms_expected")
    row["minutes_live"] = round(row["minutes_live"], 1)
    row["minutes_connected"] = round(row["minutes_connected"], 1)
    row["tier_minutes"] = {k: round(v, 1) for k, v in sorted(row["tier_minutes"].items())}
    row["audio_only_minutes"] = row["tier_minutes"].get("audio", 0.0)
    return row


def compute(facts: Facts, q: Query, scope: set[str] | None) -> dict[str, Any]:
    """Sum the facts matching the query within ``scope`` (None: every school)."""
    lo = bisect.bisect_left(facts.dates, q.date_from) if q.date_from else 0
    hi = bisect.bisect_right(facts.dates, q.date_to) if q.date_to else len(facts.dates)
    schools = scope if q.school is None else ({q.school} if scope is None or q.school in scope
                                              else set())
    totals = _empty()
    groups: dict[str, dict[str, Any]] = {}
    for f in facts.facts[lo:hi]:
        if (q.teacher and f.teacher_id != q.teacher) or (q.subject and f.subject != q.subject) \
                or (q.cluster and f.cluster_id != q.cluster):
            continue
        parts = f.schools if schools is None else {
            k: v for k, v in f.schools.items() if k in schools}
        if not parts:
            continue
        _add(totals, f, parts)
        if q.group_by == "school":
            for school, part in parts.items():
                _add(groups.setdefault(school, _empty()), f, {school: part})
        elif q.group_by:
            key = {"teacher": f.teacher_id, "subject": f.subject, "cluster": f.cluster_id,
                   "day": f.date}[q.group_by]
            _add(groups.setdefault(key, _empty()), f, parts)
    out: dict[str, Any] = {"from": q.date_from, "to": q.date_to, "group_by": q.group_by,
                           "on_time_minutes": ON_TIME_MINUTES, "totals": _finish(totals)}
    if q.group_by:
        out["groups"] = [{"key": k, **_finish(v)} for k, v in sorted(groups.items())]
    return out


def _add(row: dict[str, Any], f: Fact, parts: dict[str, dict[str, Any]]) -> None:
    for k in LESSON_FIGURES:
        row[k] += f.lesson[k]
    for part in parts.values():
        for k in ("classrooms_expected", "classrooms_joined", "classroom_answers",
                  "student_answers"):
            row[k] += part[k]
        row["minutes_connected"] += part["minutes_connected"]
        tiers = row["tier_minutes"]
        for tier, m in part["tier_minutes"].items():
            tiers[tier] = tiers.get(tier, 0.0) + m


class Stats:
    """Facts cached by the database version. The first query builds them; later ones get
    the last built facts at once while a newer version is rebuilt in the background
    (stale-while-revalidate: live lessons write usage every 10 s, and a district's
    rebuild takes about a second, which no query should wait for)."""

    def __init__(self, tz: str, ttl: float = 60.0) -> None:
        self.tz = tz
        self.ttl = ttl
        self._facts: dict[int, Facts] = {}
        self._answers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[Facts] | None = None

    def _fresh(self, cached: Facts | None, version: int) -> bool:
        return cached is not None and cached.version == version \
            and time.time() - cached.built_at < self.ttl

    async def facts(self, db: Any) -> Facts:
        version = await db.version()
        cached = self._facts.get(id(db))
        if self._fresh(cached, version):
            return cached  # type: ignore[return-value]
        if cached is not None:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.get_running_loop().create_task(self._build(db))
            return cached
        return await self._build(db)

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)

    async def _build(self, db: Any) -> Facts:
        async with self._lock:  # one rebuild at a time, the others wait for it
            version = await db.version()
            cached = self._facts.get(id(db))
            if self._fresh(cached, version):
                return cached  # type: ignore[return-value]
            snap = await tt.snapshot(db)
            classrooms = {c["id"]: c for c in await db.list("classroom")}
            usage = await db.list("usage")
            built = await asyncio.to_thread(build_facts, version, snap.slots, snap.terms,
                                            classrooms, usage, self.tz, time.time())
            self._facts[id(db)] = built
            self._answers.clear()
            return built

    async def query(self, db: Any, q: Query, scope: set[str] | None) -> dict[str, Any]:
        facts = await self.facts(db)
        key = (id(facts), q, None if scope is None else frozenset(scope))
        hit = self._answers.get(key)
        if hit is not None:
            return hit
        result = await asyncio.to_thread(compute, facts, q, scope)
        if len(self._answers) > 512:
            self._answers.clear()
        self._answers[key] = result
        return result


def parse_day(text: str | None, name: str) -> str | None:
    if not text:
        return None
    return tt.parse_date(text, name).isoformat()


def to_csv_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The answer as a table: one row per group (or the totals), fixed columns."""
    tiers = sorted({t for r in [result["totals"], *result.get("groups", [])]
                    for t in r["tier_minutes"]})
    head = ["key", *COUNTS, "minutes_live", "minutes_connected", "held_rate", "on_time_rate",
            "attendance_rate", "audio_only_minutes", *(f"tier_{t}_minutes" for t in tiers)]
    rows = [head]
    for r in result.get("groups") or [{"key": "total", **result["totals"]}]:
        rows.append([r["key"], *(r[k] for k in COUNTS), r["minutes_live"],
                     r["minutes_connected"], r["held_rate"], r["on_time_rate"],
                     r["attendance_rate"], r["audio_only_minutes"],
                     *(r["tier_minutes"].get(t, 0.0) for t in tiers)])
    return rows


def today(tz: str) -> dt.date:
    return dt.datetime.now(tt.zone(tz)).date()
