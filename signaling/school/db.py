"""The school database: directory, timetable, devices, usage — one interface, two backends.

Documents are plain JSON dicts (a record's ``to_json()``), addressed by ``(kind, id)``:
kinds ``school``, ``cluster``, ``classroom``, ``teacher``, ``term``, ``slot``,
``device``, ``occurrence``, ``usage``, ``pairing``, ... (any name matching
:data:`KIND_RE`). The embedded default is SQLite in ``<library>/classroom.db``
(db_sqlite.py); with ``--redis-url`` several nodes share Redis (db_redis.py). The same
tests run against both (tests/school/test_db.py).

Failures of the backend (a locked database, a full disk, Redis down) raise
ClassroomError ``store_unavailable`` (503) and leave nothing half-written.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from signaling.errors import ClassroomError, ErrorCode

if TYPE_CHECKING:
    from signaling.config import Config

KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

Put = tuple[str, str, dict[str, Any]]
Delete = tuple[str, str]
Guard = Callable[["SchoolDB"], Awaitable[None]]


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValueError(f"bad document kind {kind!r}")
    return kind


def matches(doc: dict[str, Any], equals: dict[str, Any]) -> bool:
    """``list(kind, **equals)``: every named top-level field equals the value."""
    return all(doc.get(k) == v for k, v in equals.items())


def unavailable(message: str) -> ClassroomError:
    return ClassroomError(ErrorCode.STORE_UNAVAILABLE, message)


class SchoolDB(abc.ABC):
    """Documents by kind and id; every write bumps :meth:`version`."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the file / connect (Node.start, before the features)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def get(self, kind: str, id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def list(self, kind: str, **equals: Any) -> list[dict[str, Any]]:
        """Every document of ``kind`` whose top-level fields equal ``equals``, by id."""

    @abc.abstractmethod
    async def put(self, kind: str, id: str, doc: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def delete(self, kind: str, id: str) -> bool:
        """True if there was such a document."""

    @abc.abstractmethod
    async def apply(self, puts: list[Put], deletes: list[Delete],
                    guard: Guard | None = None) -> None:
        """All the writes or none. ``guard(db)`` runs first, while no other write can
        happen (SQLite: this node's writer lock; Redis: WATCH on the version, retried), and
        aborts everything by raising (ClassroomError conflict, ...)."""

    @abc.abstractmethod
    async def version(self) -> int:
        """A counter bumped by every write (caches, e.g. statistics, compare it)."""

    async def ping(self) -> bool:
        """True when the backend answers."""
        try:
            await self.version()
        except ClassroomError:
            return False
        return True


def open_school_db(config: Config) -> SchoolDB:
    """Redis when the node has a Redis URL, else SQLite in the library folder."""
    if config.redis_url:
        from .db_redis import RedisSchoolDB

        return RedisSchoolDB(config.redis_url)
    from signaling.store.sqlite_file import DB_NAME

    from .db_sqlite import SqliteSchoolDB

    return SqliteSchoolDB(config.library / DB_NAME)
