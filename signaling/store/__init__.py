"""Lesson state behind one interface: in-process memory (default) or Redis."""

from .base import LessonRecord, PresenceRecord, Store, StoreUnavailable
from .memory import MemoryStore


def open_store(redis_url: str | None, *, presence_ttl: float = 30.0) -> Store:
    """Pick the backend: Redis when a URL is given, else in-process memory."""
    if redis_url:
        from .redis import RedisStore

        return RedisStore(redis_url, presence_ttl=presence_ttl)
    return MemoryStore(presence_ttl=presence_ttl)


__all__ = [
    "LessonRecord",
    "MemoryStore",
    "PresenceRecord",
    "Store",
    "StoreUnavailable",
    "open_store",
]
