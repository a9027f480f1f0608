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

import numpy as np

from . import timetable as tt

ON_TIME_MINUTES = 5
GROUPS = ("school", "teacher", "subject", "cluster", "day")
COUNTS = ("scheduled", "held", "on_time", "classrooms_expected", "classrooms_joined",
          "practice_rounds", "test_rounds", "classroom_answers", "student_answers")


TIERS = ("high", "mid", "low", "audio")
LESSON_COLS = ("scheduled", "held", "on_time", "minutes_live", "practice_rounds",
               "test_rounds")
PART_COLS = ("classrooms_expected", "classrooms_joined", "minutes_connected",
             "classroom_answers", "student_answers", *(f"tier:{t}" for t in TIERS))


class Codes:
    """Strings to small ints (and back) for the columns."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def __call__(self, name: str) -> int:
        code = self.index.get(name)
        if code is None:
            code = self.index[name] = len(self.names)
            self.names.append(name)
        return code


@dataclass
class Facts:
    """Due occurrences as columns (one row each, sorted by date) and their per-school
    parts (one row per occurrence and school it touches)."""

    version: int
    built_at: float
    dates: list[str] = field(default_factory=list)  # per fact, sorted
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # teacher/subject/cluster/day
    lesson: np.ndarray = field(default_factory=lambda: np.zeros((0, len(LESSON_COLS))))
    part_fact: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    part_school: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    part: np.ndarray = field(default_factory=lambda: np.zeros((0, len(PART_COLS))))
    codes: dict[str, Codes] = field(default_factory=dict)


def merge_usage(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The per-node usage documents of each lesson, merged (times min/max, seconds sum)."""
    out: dict[str, dict[str, Any]] = {}
    for d in docs:
        lid = d.get("lesson_id")
        if not isinstance(lid, str):
            continue
        m = out.get(lid)
        if m is None:
            out[lid] = d  # most lessons have one node's document: used as it is
            continue
        if m.get("_merged") is None:
            m = out[lid] = {**m, "_merged": True,
                            "classrooms": {k: {**r, "tiers": dict(r.get("tiers") or {})}
                                           for k, r in (m.get("classrooms") or {}).items()}}
        if d.get("started_at") is not None:
            m["started_at"] = d["started_at"] if m.get("started_at") is None else min(
                m["started_at"], d["started_at"])
        if d.get("ended_at") is not None:
            m["ended_at"] = d["ended_at"] if m.get("ended_at") is None else max(
                m["ended_at"], d["ended_at"])
        for sub, r in (d.get("classrooms") or {}).items():
            t = m["classrooms"].setdefault(sub, {"school": r.get("school", ""), "seconds": 0.0,
                                                 "tiers": {}})
            t["seconds"] = float(t.get("seconds") or 0) + float(r.get("seconds") or 0)
            for tier, s in (r.get("tiers") or {}).items():
                t["tiers"][tier] = t["tiers"].get(tier, 0.0) + float(s)
        if (d.get("quiz_read_at") or 0) > (m.get("quiz_read_at") or 0):
            m["quiz_read_at"] = d.get("quiz_read_at")
            m["rounds"] = d.get("rounds") or {}
            m["answers"] = d.get("answers") or {}
        elif not m.get("rounds") and d.get("rounds"):
            m["rounds"] = d["rounds"]
    return out


def build_facts(version: int, slots: dict[str, dict[str, Any]],
                terms: dict[str, dict[str, Any]], classrooms: dict[str, dict[str, Any]],
                usage_docs: list[dict[str, Any]], tz: str, now: float) -> Facts:
    """Every due occurrence of every term with its figures (CPU only: run in a thread)."""
    usage = merge_usage(usage_docs)
    school_of = {cid: c.get("school_id", "") for cid, c in classrooms.items()}
    occs = []
    for slot in slots.values():
        for day in tt.slot_dates(slot, terms.get(slot["term_id"])):
            occ = tt.occurrence(slot, day, tz)
            if occ.starts_at <= now:
                occs.append((occ.date, occ.starts_at, occ.lesson_id, slot))
    occs.sort(key=lambda o: (o[0], o[1]))
    codes = {k: Codes() for k in ("teacher", "subject", "cluster", "day", "school")}
    keys: dict[str, list[int]] = {k: [] for k in ("teacher", "subject", "cluster", "day")}
    lesson: list[tuple[float, ...]] = []
    part_fact: list[int] = []
    part_school: list[int] = []
    part: list[list[float]] = []
    school_code = codes["school"]
    tier_col = {t: 5 + i for i, t in enumerate(TIERS)}
    late = ON_TIME_MINUTES * 60
    for i, (date, starts_at, lesson_id, slot) in enumerate(occs):
        keys["teacher"].append(codes["teacher"](slot["teacher_id"]))
        keys["subject"].append(codes["subject"](slot["subject"]))
        keys["cluster"].append(codes["cluster"](slot.get("cluster_id", "")))
        keys["day"].append(codes["day"](date))
        u = usage.get(lesson_id)
        started = u.get("started_at") if u else None
        if started is None:
            lesson.append((1, 0, 0, 0.0, 0, 0))
            u = None
        else:
            rounds = u.get("rounds") or {}
            live = max(0.0, (u.get("ended_at") or now) - started) / 60
            lesson.append((1, 1, int(started <= starts_at + late), live,
                           rounds.get("practice", 0), rounds.get("test", 0)))
        rows: dict[str, list[float]] = {}

        def row(school: str, rows: dict[str, list[float]] = rows) -> list[float]:
            r = rows.get(school)
            if r is None:
                r = rows[school] = [0.0] * len(PART_COLS)
            return r

        row(school_of.get(slot["main_classroom_id"], ""))
        rooms = (u.get("classrooms") or {}) if u else {}
        for cid in slot.get("receiving_classroom_ids", ()):
            r = row(school_of.get(cid, ""))
            r[0] += 1
            got = rooms.get(cid)
            if got is not None and (got.get("seconds") or 0) > 0:
                r[1] += 1
        if u is not None:
            for sub, got in rooms.items():
                r = rows.get(school_of.get(sub) or got.get("school") or "")
                if r is None:
                    continue  # a classroom of a school the lesson does not involve
                r[2] += (got.get("seconds") or 0) / 60
                for tier, sec in (got.get("tiers") or {}).items():
                    col = tier_col.get(tier)
                    if col is not None:
                        r[col] += sec / 60
            answers = u.get("answers") or {}
            for sub, n in (answers.get("classrooms") or {}).items():
                r = rows.get(school_of.get(sub, ""))
                if r is not None:
                    r[3] += n
            for school, n in (answers.get("students") or {}).items():
                r = rows.get(school)
                if r is not None:
                    r[4] += n
        for school, r in rows.items():
            part_fact.append(i)
            part_school.append(school_code(school))
            part.append(r)
    return Facts(
        version, now, [o[0] for o in occs],
        {k: np.asarray(v, dtype=np.int64) for k, v in keys.items()},
        np.asarray(lesson, dtype=np.float64).reshape(-1, len(LESSON_COLS)),
        np.asarray(part_fact, dtype=np.int64), np.asarray(part_school, dtype=np.int64),
        np.asarray(part, dtype=np.float64).reshape(-1, len(PART_COLS)), codes)


@dataclass(frozen=True)
class Query:
    date_from: str | None = None
    date_to: str | None = None
    school: str | None = None
    teacher: str | None = None
    subject: str | None = None
    cluster: str | None = None
    group_by: str | None = None


def _row(lesson: np.ndarray, part: np.ndarray) -> dict[str, Any]:
    r: dict[str, Any] = dict(zip(LESSON_COLS, map(float, lesson), strict=True))
    r.update(zip(PART_COLS, map(float, part), strict=True))
    for k in COUNTS:
        r[k] = int(round(r[k]))
    tiers = {t: r.pop(f"tier:{t}") for t in TIERS}
    r["tier_minutes"] = {t: m for t, m in tiers.items() if m > 0}
    return _finish(r)


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
    n = len(facts.dates)
    lo = bisect.bisect_left(facts.dates, q.date_from) if q.date_from else 0
    hi = bisect.bisect_right(facts.dates, q.date_to) if q.date_to else n
    fm = np.zeros(n, dtype=bool)
    fm[lo:hi] = True
    for name, value in (("teacher", q.teacher), ("subject", q.subject),
                        ("cluster", q.cluster)):
        if value is not None:
            code = facts.codes[name].index.get(value, -1) if facts.codes else -1
            fm &= facts.keys[name] == code
    schools = scope if q.school is None else ({q.school} if scope is None or q.school in scope
                                              else set())
    pm = fm[facts.part_fact] if n else np.zeros(0, dtype=bool)
    if schools is not None:
        wanted = [facts.codes["school"].index[s] for s in schools
                  if facts.codes and s in facts.codes["school"].index]
        pm &= np.isin(facts.part_school, wanted)
        fm = np.zeros(n, dtype=bool)
        fm[facts.part_fact[pm]] = True  # a lesson counts if one of its schools is in
    out: dict[str, Any] = {"from": q.date_from, "to": q.date_to, "group_by": q.group_by,
                           "on_time_minutes": ON_TIME_MINUTES,
                           "totals": _row(facts.lesson[fm].sum(axis=0),
                                          facts.part[pm].sum(axis=0))}
    if q.group_by == "school":
        key = facts.part_school[pm]
        names = facts.codes["school"].names if facts.codes else []
        lesson = facts.lesson[facts.part_fact[pm]]  # once per (lesson, school)
        part = facts.part[pm]
    elif q.group_by:
        kname = "day" if q.group_by == "day" else q.group_by
        names = facts.codes[kname].names if facts.codes else []
        fkey = facts.keys[kname] if n else np.zeros(0, dtype=np.int64)
        key = fkey[fm]
        lesson = facts.lesson[fm]
        pkey = fkey[facts.part_fact[pm]] if n else np.zeros(0, dtype=np.int64)
        part = facts.part[pm]
    if q.group_by:
        size = len(names)
        lsum = np.stack([np.bincount(key, weights=lesson[:, c], minlength=size)
                         for c in range(len(LESSON_COLS))], axis=1) if size else None
        pkey = key if q.group_by == "school" else pkey
        psum = np.stack([np.bincount(pkey, weights=part[:, c], minlength=size)
                         for c in range(len(PART_COLS))], axis=1) if size else None
        present = np.bincount(key, minlength=size) > 0 if size else []
        groups = [{"key": names[g], **_row(lsum[g], psum[g])}  # type: ignore[index]
                  for g in range(size) if present[g]]
        out["groups"] = sorted(groups, key=lambda g: g["key"])
    return out


class Stats:
    """Facts cached by the database version. The first query builds them; later ones get
    the last built facts at once while a newer version is rebuilt in the background
    (stale-while-revalidate: live lessons write usage every 10 s, and a district's
    rebuild takes about a second, which no query should wait for)."""

    def __init__(self, tz: str, ttl: float = 300.0) -> None:
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
