"""The timetable (课表): slots, their weekly recurrence inside a term, and conflicts.

A slot is a weekly recurring lesson (``weekday`` 0=Mon..6) or a one-off (``date``), from
``starts`` to ``ends`` (HH:MM, the district's local wall time). It recurs on every date of
its term (``starts``..``ends`` inclusive) but the term's holidays. Times are local wall
time in the district's time zone (``Config.timezone``): a slot at 08:00 is at 08:00 on
both sides of a clock change; a start inside a spring-forward gap is read with the offset
before the change (zoneinfo ``fold=0``).

Two slots conflict when they share a teacher or a classroom (main or receiving) and
overlap on some date (touching ends do not overlap). Writes are checked here first, then
again inside ``SchoolDB.apply``'s guard (:func:`conflict_guard`), so two concurrent writes
cannot both win.

For the scheduler (helper G) and the stats::

    occurrences_between(db, start, end, *, classroom_id=None, teacher_id=None, tz=None)
        -> list[Occurrence]

``start``/``end`` are epoch seconds; it returns every occurrence overlapping
``[start, end)``, sorted by ``starts_at``; ``classroom_id`` matches the main or a
receiving classroom. ``tz`` defaults to ``CLASSROOM_TZ`` or Asia/Shanghai (pass
``node.config.timezone``). The parsed timetable is cached by ``SchoolDB.version()``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ClassroomError, ErrorCode
from .model import ID_RE, Occurrence

DEFAULT_TZ = "Asia/Shanghai"
HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::[0-5]\d)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_TEXT = 100


def default_timezone() -> str:
    return os.environ.get("CLASSROOM_TZ", "").strip() or DEFAULT_TZ


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ClassroomError(ErrorCode.BAD_MESSAGE, f"unknown time zone {name!r}") from None


def bad(message: str) -> ClassroomError:
    return ClassroomError(ErrorCode.BAD_MESSAGE, message)


class SlotConflict(ClassroomError):
    """409 naming the other slot (its JSON carries ``other``)."""

    def __init__(self, message: str, other: dict[str, Any]) -> None:
        super().__init__(ErrorCode.CONFLICT, message)
        self.other = other

    def to_json(self) -> dict[str, Any]:  # type: ignore[override]
        return {**super().to_json(), "other": self.other}


# parsing -----------------------------------------------------------------------------------
def minutes(text: Any, name: str) -> int:
    """``HH:MM`` (or Excel's ``H:MM:SS``) -> minutes after midnight."""
    m = HHMM.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise bad(f"{name}: expected HH:MM, got {text!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def hhmm(total: int) -> str:
    return f"{total // 60:02d}:{total % 60:02d}"


def parse_date(text: Any, name: str) -> dt.date:
    if isinstance(text, str):
        t = text.strip().replace("/", "-")
        parts = t.split("-")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            try:
                return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
            except ValueError:
                pass
    raise bad(f"{name}: expected YYYY-MM-DD, got {text!r}")


def _text(doc: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = doc.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise bad(f"{name}: expected text")
    value = value.strip()
    if required and not value:
        raise bad(f"{name}: required")
    if len(value) > MAX_TEXT:
        raise bad(f"{name}: at most {MAX_TEXT} characters")
    return value


def _id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise bad(f"{name}: expected an id (letters, digits, _ or -; at most 64), got {value!r}")
    return value


def normalize_term(doc: Any, term_id: str | None = None) -> dict[str, Any]:
    """A term document as stored: ``{id, name, starts, ends, holidays}`` (checked)."""
    if not isinstance(doc, dict):
        raise bad("a term is a JSON object")
    tid = _id(term_id if term_id is not None else doc.get("id"), "id")
    starts = parse_date(doc.get("starts"), "starts")
    ends = parse_date(doc.get("ends"), "ends")
    if ends < starts:
        raise bad("ends: before starts")
    if (ends - starts).days > 366:
        raise bad("ends: a term lasts at most a year")
    holidays = doc.get("holidays") or []
    if not isinstance(holidays, list):
        raise bad("holidays: expected a list of dates")
    days = sorted({parse_date(h, "holidays").isoformat() for h in holidays})
    return {"id": tid, "name": _text(doc, "name", required=False) or tid,
            "starts": starts.isoformat(), "ends": ends.isoformat(), "holidays": days}


def normalize_slot(doc: Any, slot_id: str | None = None) -> dict[str, Any]:
    """The slot's shape (ids, times, weekday xor date); references are checked apart."""
    if not isinstance(doc, dict):
        raise bad("a slot is a JSON object")
    sid = _id(slot_id if slot_id is not None else doc.get("id"), "id")
    weekday, date = doc.get("weekday"), doc.get("date")
    if (weekday is None) == (date in (None, "")):
        raise bad("give exactly one of weekday (0=Mon..6, weekly) and date (one-off)")
    if weekday is not None and (isinstance(weekday, bool) or not isinstance(weekday, int)
                                or not 0 <= weekday <= 6):
        raise bad(f"weekday: expected 0 (Monday) .. 6 (Sunday), got {weekday!r}")
    day = parse_date(date, "date").isoformat() if weekday is None else None
    start, end = minutes(doc.get("starts"), "starts"), minutes(doc.get("ends"), "ends")
    if end <= start:
        raise bad("ends: must be after starts")
    receiving = doc.get("receiving_classroom_ids") or []
    if not isinstance(receiving, list):
        raise bad("receiving_classroom_ids: expected a list")
    rec = []
    for r in receiving:
        r = _id(r, "receiving_classroom_ids")
        if r not in rec:
            rec.append(r)
    main = _id(doc.get("main_classroom_id"), "main_classroom_id")
    if main in rec:
        raise bad(f"receiving_classroom_ids: {main} is the main classroom")
    cluster = doc.get("cluster_id") or ""
    return {"id": sid, "term_id": _id(doc.get("term_id"), "term_id"),
            "subject": _text(doc, "subject"), "grade": _text(doc, "grade", required=False),
            "teacher_id": _id(doc.get("teacher_id"), "teacher_id"),
            "main_classroom_id": main, "receiving_classroom_ids": rec,
            "cluster_id": _id(cluster, "cluster_id") if cluster else "",
            "weekday": weekday, "date": day, "starts": hhmm(start), "ends": hhmm(end),
            "title": _text(doc, "title", required=False)}


# the directory the rules need --------------------------------------------------------------
@dataclass
class Directory:
    """What a slot refers to, read once (a CSV import checks thousands of rows on it)."""

    classrooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    teachers: dict[str, dict[str, Any]] = field(default_factory=dict)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    terms: dict[str, dict[str, Any]] = field(default_factory=dict)
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)


async def load_directory(db: Any) -> Directory:
    kinds = ("classroom", "teacher", "cluster", "term", "slot")
    lists = [await db.list(kind) for kind in kinds]
    return Directory(*({d["id"]: d for d in docs} for docs in lists))


def check_references(slot: dict[str, Any], d: Directory) -> None:
    """Unknown term/teacher/classroom/cluster -> 400 naming it; receiving classrooms must
    be in the cluster's schools; a one-off must fall in its term, not on a holiday."""
    term = d.terms.get(slot["term_id"])
    if term is None:
        raise bad(f"term_id: unknown term {slot['term_id']}")
    if slot["teacher_id"] not in d.teachers:
        raise bad(f"teacher_id: unknown teacher {slot['teacher_id']}")
    for cid in [slot["main_classroom_id"], *slot["receiving_classroom_ids"]]:
        if cid not in d.classrooms:
            field_name = ("main_classroom_id" if cid == slot["main_classroom_id"]
                          else "receiving_classroom_ids")
            raise bad(f"{field_name}: unknown classroom {cid}")
    if slot["cluster_id"]:
        cluster = d.clusters.get(slot["cluster_id"])
        if cluster is None:
            raise bad(f"cluster_id: unknown cluster {slot['cluster_id']}")
        schools = set(cluster.get("school_ids") or [])
        for cid in slot["receiving_classroom_ids"]:
            school = d.classrooms[cid].get("school_id")
            if school not in schools:
                raise bad(f"receiving_classroom_ids: classroom {cid} (school {school}) is "
                          f"not in cluster {slot['cluster_id']}")
    elif slot["receiving_classroom_ids"]:
        raise bad("cluster_id: needed when receiving classrooms are given (they come from "
                  "the cluster's schools)")
    if slot["date"] is not None:
        if not term["starts"] <= slot["date"] <= term["ends"]:
            raise bad(f"date: {slot['date']} is outside term {term['id']} "
                      f"({term['starts']}..{term['ends']})")
        if slot["date"] in term.get("holidays", []):
            raise bad(f"date: {slot['date']} is a holiday of term {term['id']}")


# recurrence --------------------------------------------------------------------------------
def slot_dates(slot: dict[str, Any], term: dict[str, Any] | None,
               first: dt.date | None = None, last: dt.date | None = None) -> list[dt.date]:
    """The dates the slot takes place on, inside the term (and ``first..last``)."""
    if term is None:
        return []
    lo, hi = dt.date.fromisoformat(term["starts"]), dt.date.fromisoformat(term["ends"])
    if first is not None and first > lo:
        lo = first
    if last is not None and last < hi:
        hi = last
    holidays = set(term.get("holidays") or [])
    if slot.get("date"):
        day = dt.date.fromisoformat(slot["date"])
        return [day] if lo <= day <= hi and slot["date"] not in holidays else []
    out = []
    day = lo + dt.timedelta(days=(slot["weekday"] - lo.weekday()) % 7)
    while day <= hi:
        if day.isoformat() not in holidays:
            out.append(day)
        day += dt.timedelta(days=7)
    return out


def lesson_id_of(slot_id: str, day: dt.date) -> str:
    return f"{slot_id}-{day:%Y%m%d}"


def occurrence(slot: dict[str, Any], day: dt.date, tz: str) -> Occurrence:
    """The slot on ``day`` in local wall time (a clock change on that day is honoured)."""
    z = zone(tz)
    s, e = minutes(slot["starts"], "starts"), minutes(slot["ends"], "ends")
    start = dt.datetime(day.year, day.month, day.day, s // 60, s % 60, tzinfo=z).timestamp()
    end = dt.datetime(day.year, day.month, day.day, e // 60, e % 60, tzinfo=z).timestamp()
    return Occurrence(lesson_id=lesson_id_of(slot["id"], day), slot_id=slot["id"],
                      date=day.isoformat(), starts_at=start, ends_at=max(end, start))


def expand(slots: Iterable[dict[str, Any]], terms: dict[str, dict[str, Any]],
           first: dt.date, last: dt.date, tz: str) -> list[Occurrence]:
    """Every occurrence of ``slots`` on the dates ``first..last``, sorted by start."""
    out = [occurrence(s, day, tz) for s in slots
           for day in slot_dates(s, terms.get(s["term_id"]), first, last)]
    out.sort(key=lambda o: (o.starts_at, o.slot_id))
    return out


def involves(slot: dict[str, Any], classroom_id: str) -> bool:
    return (slot["main_classroom_id"] == classroom_id
            or classroom_id in slot.get("receiving_classroom_ids", ()))


@dataclass
class Snapshot:
    """Slots and terms at one ``SchoolDB.version()``."""

    version: int
    slots: dict[str, dict[str, Any]]
    terms: dict[str, dict[str, Any]]


_snapshots: dict[int, Snapshot] = {}


async def snapshot(db: Any) -> Snapshot:
    """Slots and terms, read again only when the database changed (by its version)."""
    version = await db.version()
    cached = _snapshots.get(id(db))
    if cached is not None and cached.version == version:
        return cached
    slots = {s["id"]: s for s in await db.list("slot")}
    terms = {t["id"]: t for t in await db.list("term")}
    snap = _snapshots[id(db)] = Snapshot(version, slots, terms)
    return snap


async def occurrences_between(db: Any, start: float, end: float, *,
                              classroom_id: str | None = None, teacher_id: str | None = None,
                              tz: str | None = None) -> list[Occurrence]:
    """Occurrences overlapping ``[start, end)`` (epoch seconds), sorted by start."""
    name = tz or default_timezone()
    z = zone(name)
    snap = await snapshot(db)
    first = dt.datetime.fromtimestamp(start, z).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end, z).date()
    slots = [s for s in snap.slots.values()
             if (classroom_id is None or involves(s, classroom_id))
             and (teacher_id is None or s["teacher_id"] == teacher_id)]
    return [o for o in expand(slots, snap.terms, first, last, name)
            if o.starts_at < end and o.ends_at > start]


# conflicts ---------------------------------------------------------------------------------
def resources(slot: dict[str, Any]) -> set[str]:
    return {"t:" + slot["teacher_id"], "c:" + slot["main_classroom_id"],
            *("c:" + c for c in slot.get("receiving_classroom_ids", ()))}


def _times_overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (minutes(a["starts"], "starts") < minutes(b["ends"], "ends")
            and minutes(b["starts"], "starts") < minutes(a["ends"], "ends"))


def _shared(a: dict[str, Any], b: dict[str, Any]) -> str:
    both = sorted(resources(a) & resources(b))
    what = both[0]
    return ("teacher " if what.startswith("t:") else "classroom ") + what[2:]


class ConflictIndex:
    """Slots by teacher and classroom, to find the one a new slot collides with."""

    def __init__(self, slots: Iterable[dict[str, Any]], terms: dict[str, dict[str, Any]]
                 ) -> None:
        self.terms = terms
        self.by_resource: dict[str, list[dict[str, Any]]] = {}
        self._dates: dict[str, set[dt.date]] = {}
        for s in slots:
            self.add(s)

    def dates(self, slot: dict[str, Any]) -> set[dt.date]:
        key = slot["id"]
        got = self._dates.get(key)
        if got is None:
            got = self._dates[key] = set(slot_dates(slot, self.terms.get(slot["term_id"])))
        return got

    def add(self, slot: dict[str, Any]) -> None:
        for r in resources(slot):
            self.by_resource.setdefault(r, []).append(slot)

    def find(self, slot: dict[str, Any], ignore: set[str] = frozenset()  # type: ignore[assignment]
             ) -> dict[str, Any] | None:
        """The first slot (other id, not in ``ignore``) the slot conflicts with."""
        seen: set[str] = set()
        mine: set[dt.date] | None = None
        for r in sorted(resources(slot)):
            for other in self.by_resource.get(r, ()):
                oid = other["id"]
                if oid == slot["id"] or oid in ignore or oid in seen:
                    continue
                seen.add(oid)
                if not _times_overlap(slot, other):
                    continue
                if slot.get("weekday") is not None and other.get("weekday") is not None \
                        and slot["weekday"] != other["weekday"]:
                    continue
                if mine is None:
                    mine = set(slot_dates(slot, self.terms.get(slot["term_id"])))
                if mine & self.dates(other):
                    return other
        return None


def conflict_error(slot: dict[str, Any], other: dict[str, Any]) -> SlotConflict:
    when = other.get("date") or ("weekday " + str(other.get("weekday")))
    return SlotConflict(
        f"slot {slot['id']} overlaps slot {other['id']} ({other.get('subject', '')}, {when} "
        f"{other['starts']}-{other['ends']}): same {_shared(slot, other)}", other)


def check_conflicts(new: list[dict[str, Any]], stored: dict[str, dict[str, Any]],
                    terms: dict[str, dict[str, Any]], deleted: set[str] = frozenset()  # type: ignore[assignment]
                    ) -> None:
    """Raise SlotConflict for the first new slot overlapping a stored one (those replaced
    by ``new`` or ``deleted`` do not count) or another new one."""
    replaced = {s["id"] for s in new} | set(deleted)
    index = ConflictIndex([s for sid, s in stored.items() if sid not in replaced], terms)
    for slot in new:
        other = index.find(slot)
        if other is not None:
            raise conflict_error(slot, other)
        index.add(slot)


def conflict_guard(new: list[dict[str, Any]], deleted: set[str] = frozenset()  # type: ignore[assignment]
                   ) -> Callable[[Any], Awaitable[None]]:
    """``SchoolDB.apply``'s guard: the same check on what is stored inside its lock."""
    async def guard(db: Any) -> None:
        stored = {s["id"]: s for s in await db.list("slot")}
        terms = {t["id"]: t for t in await db.list("term")}
        check_conflicts(new, stored, terms, deleted)

    return guard


def week_conflicts(slots: list[dict[str, Any]], terms: dict[str, dict[str, Any]]
                   ) -> list[dict[str, str]]:
    """Pairs of stored slots that overlap (imported before a rule, or on another node)."""
    index = ConflictIndex([], terms)
    out = []
    for s in sorted(slots, key=lambda s: s["id"]):
        other = index.find(s)
        if other is not None:
            out.append({"slot_id": s["id"], "other_id": other["id"], "what": _shared(s, other)})
        index.add(s)
    return out
