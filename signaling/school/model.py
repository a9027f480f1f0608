"""The directory and timetable records, as plain dataclasses that travel as JSON.

Every record is stored as its ``to_json()`` dict in the school database
(:mod:`signaling.school.db`); ``from_json`` ignores unknown fields, so a newer node's
records load on an older one. The rules (conflicts, recurrence, pairing) live with their
owners; these are only the shapes and the id format every id shares.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from signaling.errors import ClassroomError, ErrorCode

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""Every directory/timetable id: URL- and CSV-safe, at most 64 characters."""

SCHOOL_KINDS = ("primary", "junior", "senior", "point")
"""primary 小学, junior 初中, senior 高中, point 教学点 (a rural teaching point)."""
DEVICE_KINDS = ("tv", "whiteboard", "pc")
NAME_MAX = 100

R = TypeVar("R", bound="Record")


def check_id(text: object, field_name: str) -> str:
    """``text`` if it is a valid id, else ClassroomError bad_message naming the field."""
    if not isinstance(text, str) or not ID_RE.match(text):
        raise ClassroomError(
            ErrorCode.BAD_MESSAGE,
            f"{field_name}: expected 1-64 letters, digits, '_' or '-' (not starting with "
            f"'_' or '-'), got {text!r}"[:200])
    return text


class Record:
    """``to_json`` / ``from_json`` shared by the records (as LessonRecord's)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return cls(**{k: data[k] for k in fields if k in data})


@dataclass
class School(Record):
    id: str
    name: str
    district: str = ""
    kind: str = "primary"
    created_at: float = field(default_factory=time.time)


@dataclass
class Cluster(Record):
    """集群: schools taught together (6+2+N: six rural primary, two junior, N city)."""

    id: str
    name: str
    school_ids: list[str] = field(default_factory=list)


@dataclass
class Classroom(Record):
    id: str
    school_id: str
    name: str
    device_kind: str = "tv"


@dataclass
class Teacher(Record):
    id: str
    school_id: str
    name: str
    subjects: list[str] = field(default_factory=list)


@dataclass
class Term(Record):
    id: str
    name: str
    starts: str  # YYYY-MM-DD
    ends: str  # YYYY-MM-DD
    holidays: list[str] = field(default_factory=list)


@dataclass
class Slot(Record):
    """A timetable entry: weekly (``weekday`` 0=Mon..6) or one-off (``date``)."""

    id: str
    term_id: str
    subject: str
    grade: str
    teacher_id: str
    main_classroom_id: str
    receiving_classroom_ids: list[str] = field(default_factory=list)
    cluster_id: str = ""
    weekday: int | None = None
    date: str | None = None
    starts: str = "08:00"  # HH:MM local time (Config.timezone)
    ends: str = "08:40"
    title: str = ""


@dataclass
class Device(Record):
    id: str
    classroom_id: str
    school_id: str
    name: str
    secret_hash: str
    created_at: float = field(default_factory=time.time)
    last_seen: float | None = None
    revoked_at: float | None = None
    rotated_at: float | None = None


@dataclass
class Occurrence(Record):
    """A scheduled lesson instance; ``lesson_id = f"{slot_id}-{YYYYMMDD}"``."""

    lesson_id: str
    slot_id: str
    date: str
    starts_at: float
    ends_at: float


KINDS: dict[str, type[Record]] = {
    "school": School, "cluster": Cluster, "classroom": Classroom, "teacher": Teacher,
    "term": Term, "slot": Slot, "device": Device, "occurrence": Occurrence,
}
"""The record kinds with a dataclass; the database stores other kinds too ("usage",
"pairing", ...) as their owners' plain dicts."""
