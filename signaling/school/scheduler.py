"""What a classroom's device does now, from the timetable; lessons that end by themselves.

* :func:`room_plan`: a classroom's current lesson (its window opens :data:`LEAD` seconds
  before the start, closes at the end plus the overrun, or when the lesson ended) and the
  next one. The lesson of an occurrence is created here (``LessonRecord`` id
  ``f"{slot_id}-{YYYYMMDD}"``, title/teacher/school from the slot) the first time a device
  or teacher asks, so the teacher's console and every classroom meet in the same lesson.
* :class:`AutoEnd`: a live timetable lesson ends at its end plus ``overrun`` (拖堂), and
  :data:`WARN_BEFORE` seconds before that every socket of the lesson is sent
  ``lesson-ending`` (the teacher console can show it).

Times are the district's (``Config.timezone``, zoneinfo); occurrences carry epoch seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from signaling.messages import ServerMessage, Timestamp
from signaling.messages.base import NonNegInt
from signaling.store import LessonRecord, StoreUnavailable

if TYPE_CHECKING:
    from signaling.lessons import LessonHub

    from .db import SchoolDB

logger = logging.getLogger(__name__)

LEAD = 600.0
"""Seconds before a lesson's start when its classrooms show the countdown and join."""
WARN_BEFORE = 300.0
"""Seconds before the automatic end when ``lesson-ending`` is sent."""
HORIZON = 21 * 86400.0
"""How far ahead the next lesson is looked for."""
LOOKBACK = 12 * 3600.0
"""How far back a lesson may have started and still be running."""


class LessonEnding(ServerMessage, tag="lesson-ending"):
    """The lesson ends by itself soon: its timetable end plus the allowed overrun (拖堂)."""

    sent_to: ClassVar = "every socket of a timetable lesson, once, 5 minutes before"
    ends_at: Timestamp
    """When the server ends the lesson."""
    seconds_left: NonNegInt


def lesson_id_of(slot_id: str, date: str) -> str:
    """``f"{slot_id}-{YYYYMMDD}"`` of a slot's occurrence on ``date`` (YYYY-MM-DD)."""
    return f"{slot_id}-{date.replace('-', '')}"


def split_lesson_id(lesson_id: str) -> tuple[str, str] | None:
    """``(slot id, YYYY-MM-DD)`` of a timetable lesson id, None for any other lesson."""
    slot_id, _, day = lesson_id.rpartition("-")
    if not slot_id or len(day) != 8 or not day.isdigit():
        return None
    return slot_id, f"{day[:4]}-{day[4:6]}-{day[6:]}"


def local_time(date: str, hhmm: str, tz: str) -> float:
    """Epoch seconds of ``date`` (YYYY-MM-DD) at ``hhmm`` in the zone ``tz``."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    year, month, day = (int(x) for x in date.split("-"))
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp()


def today(tz: str, now: float) -> str:
    return datetime.fromtimestamp(now, ZoneInfo(tz)).strftime("%Y-%m-%d")


async def occurrences(db: SchoolDB, start: float, end: float, *, tz: str,
                      classroom_id: str | None = None, teacher_id: str | None = None,
                      ) -> list[dict[str, Any]]:
    """The timetable's occurrences between two times (timetable.py), as dicts, by start."""
    from .timetable import occurrences_between

    found = await occurrences_between(db, start, end, classroom_id=classroom_id,
                                      teacher_id=teacher_id, tz=tz)
    out = [o if isinstance(o, dict) else o.to_json() for o in found]
    return sorted(out, key=lambda o: o["starts_at"])


async def describe(db: SchoolDB, occ: dict[str, Any]) -> dict[str, Any]:
    """An occurrence with what a page shows: subject, title, teacher, school, classrooms."""
    slot = await db.get("slot", occ["slot_id"]) or {}
    teacher = await db.get("teacher", slot.get("teacher_id", "")) if slot.get(
        "teacher_id") else None
    main = await db.get("classroom", slot.get("main_classroom_id", "")) if slot.get(
        "main_classroom_id") else None
    school = await db.get("school", main["school_id"]) if main else None
    return {
        "lesson_id": occ["lesson_id"], "slot_id": occ["slot_id"], "date": occ["date"],
        "starts_at": occ["starts_at"], "ends_at": occ["ends_at"],
        "subject": slot.get("subject", ""), "grade": slot.get("grade", ""),
        "title": slot.get("title") or slot.get("subject", ""),
        "starts": slot.get("starts", ""), "ends": slot.get("ends", ""),
        "teacher_id": slot.get("teacher_id", ""),
        "teacher": (teacher or {}).get("name", ""),
        "school_id": (main or {}).get("school_id", ""),
        "school": (school or {}).get("name", ""),
        "main_classroom_id": slot.get("main_classroom_id", ""),
        "receiving_classroom_ids": list(slot.get("receiving_classroom_ids") or []),
    }


async def ensure_lesson(hub: LessonHub, info: dict[str, Any]) -> LessonRecord:
    """The occurrence's lesson, created ``waiting`` from the slot if it does not exist."""
    lesson = await hub.store.get_lesson(info["lesson_id"])
    if lesson is None:
        await hub.store.create_lesson(LessonRecord(
            id=info["lesson_id"], title=info["title"], teacher=info["teacher"],
            school=info["school_id"]))
        lesson = await hub.store.get_lesson(info["lesson_id"])
    assert lesson is not None
    return lesson


def phase(info: dict[str, Any], lesson: LessonRecord | None, now: float) -> str:
    """``countdown`` (before the start), ``waiting`` (started on paper, teacher not yet),
    ``live``, or ``ended``."""
    if lesson is not None and lesson.state in ("live", "ended"):
        return lesson.state
    return "countdown" if now < info["starts_at"] else "waiting"


async def room_plan(db: SchoolDB, hub: LessonHub, classroom_id: str, now: float, *,
                    tz: str, overrun: float) -> dict[str, Any]:
    """``{"current": lesson or None, "next": lesson or None}`` for a classroom: current is
    the first occurrence whose window (LEAD before its start .. its end + overrun) holds
    ``now`` and whose lesson has not ended; next is the first one after it."""
    found = await occurrences(db, now - LOOKBACK, now + HORIZON, tz=tz,
                              classroom_id=classroom_id)
    current: dict[str, Any] | None = None
    upcoming: dict[str, Any] | None = None
    for occ in found:
        if occ["ends_at"] + overrun <= now:
            continue
        if current is None and occ["starts_at"] - LEAD <= now:
            lesson = await hub.store.get_lesson(occ["lesson_id"])
            if lesson is not None and lesson.state == "ended":
                continue
            info = await describe(db, occ)
            lesson = await ensure_lesson(hub, info)
            current = {**info, "state": phase(info, lesson, now)}
            continue
        info = await describe(db, occ)
        upcoming = {**info, "state": "countdown"}
        break
    return {"current": current, "next": upcoming}


async def teacher_today(db: SchoolDB, hub: LessonHub, teacher_id: str, now: float, tz: str,
                        overrun: float) -> list[dict[str, Any]]:
    """The teacher's lessons of today (local date), each with its lesson's state."""
    day = today(tz, now)
    start, end = local_time(day, "00:00", tz), local_time(day, "00:00", tz) + 86400.0
    out = []
    for occ in await occurrences(db, start, end, tz=tz, teacher_id=teacher_id):
        info = await describe(db, occ)
        lesson = await ensure_lesson(hub, info)
        state = phase(info, lesson, now)
        if state in ("countdown", "waiting") and info["ends_at"] + overrun <= now:
            state = "missed"
        out.append({**info, "state": state})
    return out


def end_deadline(slot: dict[str, Any], date: str, tz: str, overrun: float) -> float:
    """When a slot's lesson on ``date`` ends by itself: its end plus the overrun."""
    return local_time(date, slot["ends"], tz) + overrun


class AutoEnd:
    """Ends live timetable lessons at their end plus the overrun; warns first.

    Every node runs one (each reads the shared store; ending is idempotent, so two nodes
    ending the same lesson is harmless; the warning may then reach a lesson twice)."""

    def __init__(self, db_of: Callable[[], SchoolDB | None], hub: LessonHub, *, tz: str,
                 overrun: float, tick: float = 5.0, clock: Callable[[], float] = time.time,
                 ) -> None:
        self.db_of = db_of
        self.hub = hub
        self.tz = tz
        self.overrun = overrun
        self.tick = tick
        self.clock = clock
        self.warned: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="auto-end")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except StoreUnavailable:
                pass
            except Exception:
                logger.exception("auto-end pass failed")
            await asyncio.sleep(self.tick)

    async def check(self) -> list[str]:
        """One pass: warn and end what is due; returns the lessons ended."""
        db = self.db_of()
        if db is None:
            return []
        now = self.clock()
        ended = []
        for lesson in await self.hub.store.list_lessons():
            if lesson.state != "live":
                self.warned.discard(lesson.id)
                continue
            parts = split_lesson_id(lesson.id)
            slot = await db.get("slot", parts[0]) if parts else None
            if not parts or not slot or not slot.get("ends"):
                continue
            deadline = end_deadline(slot, parts[1], self.tz, self.overrun)
            if now >= deadline:
                await self.hub.set_state(lesson.id, "ended")
                self.warned.discard(lesson.id)
                ended.append(lesson.id)
                logger.info("lesson ended by the timetable", extra={"lesson": lesson.id})
            elif now >= deadline - WARN_BEFORE and lesson.id not in self.warned:
                self.warned.add(lesson.id)
                await self.hub.store.publish(lesson.id, {
                    "type": "lesson-ending", "ends_at": deadline,
                    "seconds_left": int(deadline - now)})
        return ended
