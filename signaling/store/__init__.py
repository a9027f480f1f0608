"""Lesson state behind one interface: Redis, SQLite in the library folder (the embedded
default of ``classroom serve``), or in-process memory."""

from pathlib import Path

from .base import LessonRecord, PresenceRecord, Store, StoreUnavailable
from .memory import MemoryStore


def open_store(redis_url: str | None, *, presence_ttl: float = 30.0,
               library: Path | None = None) -> Store:
    """Pick the backend: Redis when a URL is given, else lessons in
    ``<library>/classroom.db`` (they survive a restart), else in-process memory."""
    if redis_url:
        from .redis import RedisStore

        return RedisStore(redis_url, presence_ttl=presence_ttl)
    if library is not None:
        from .sqlite import SqliteStore
        from .sqlite_file import DB_NAME

        return SqliteStore(library / DB_NAME, presence_ttl=presence_ttl)
    return MemoryStore(presence_ttl=presence_ttl)


__all__ = [
    "LessonRecord",
    "MemoryStore",
    "PresenceRecord",
    "Store",
    "StoreUnavailable",
    "open_store",
]
