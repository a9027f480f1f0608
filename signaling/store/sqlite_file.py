"""One SQLite database file used from asyncio: every call runs on one dedicated thread.

The embedded default keeps lessons, quiz state and the school directory in
``<library>/classroom.db`` (WAL journal: readers never wait for the writer). Each user
(lesson store, quiz store, school database) opens its own :class:`SqliteFile`, so its
own connection and thread; the event loop never touches the file. A database that is
locked by another process for longer than ``busy_timeout``, a full disk or an unreadable
file become :class:`StoreUnavailable` with a message saying which, after the transaction
was rolled back: nothing is half-written.

Durability: ``synchronous=NORMAL`` in WAL mode. A committed transaction survives the
process being killed (kill -9, a crash); a power cut may lose the last ones.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .base import StoreUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

DB_NAME = "classroom.db"
"""The embedded database's file name in the library folder."""

BUSY_TIMEOUT = 1.5
"""Seconds a write waits for another process's lock before store_unavailable (the same
bound as a Redis call's, signaling/store/redis.py CALL_TIMEOUT)."""


def describe(exc: BaseException, path: Path) -> str:
    """A clear sentence for an SQLite/OS failure (store_unavailable's message)."""
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in text:
        return f"database {path.name}: disk is full, nothing was written; free space and retry"
    if "locked" in text or "busy" in text:
        return (f"database {path.name} is locked by another process, nothing was written; "
                "retry")
    if "readonly" in text or "read-only" in text:
        return f"database {path.name} is read-only, nothing was written"
    return f"database {path.name} unavailable ({exc.__class__.__name__}: {exc})"[:300]


class SqliteFile:
    """A connection to one SQLite file, owned by one thread; :meth:`run` calls into it."""

    def __init__(self, path: Path, schema: str, *, busy_timeout: float = BUSY_TIMEOUT,
                 name: str = "sqlite") -> None:
        self.path = Path(path)
        self.schema = schema
        self.busy_timeout = busy_timeout
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._thread: int | None = None

    async def open(self) -> None:
        """Create the file (and its tables) if needed; WAL journal."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        await self.run(self._connect)

    def _connect(self, _conn: sqlite3.Connection | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self.schema)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._thread = threading.get_ident()

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self.run(self._disconnect)
        except StoreUnavailable:
            pass
        self._executor.shutdown(wait=True)
        self._executor = None

    def _disconnect(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()
        self._conn = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the database thread; failures -> StoreUnavailable."""
        if self._executor is None:
            raise StoreUnavailable(f"database {self.path.name} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, fn)

    def _guarded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        try:
            return fn(conn)  # type: ignore[arg-type]  # None only for _connect
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            if conn is not None and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            message = describe(exc, self.path)
            logger.warning("%s", message)
            raise StoreUnavailable(message) from exc


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: the writer lock is taken first (so the reads in
    the transaction see what it writes over); any failure rolls back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
