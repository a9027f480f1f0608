"""The library catalog: one JSON file in the library folder, written atomically.

Layout of the library folder::

    catalog.json                     every recording's record + the schools' consent records
    recordings/<id>/meta.json        the same record, beside the media (the catalog is
                                     rebuilt from these: ``classroom library rebuild``)
    recordings/<id>/segments/ ...    what the recorder wrote (recorder.py)
    recordings/<id>/replay/ ...      what the packager made (packager.py)

Every write goes to a temporary file, is fsync'd, renamed over the old one and the folder
is fsync'd: a crash leaves the old or the new catalog, never half of one. With Redis
configured the catalog still lives here, beside the media it describes (a node serves
what it recorded; nodes that share a library folder share the catalog).

Several processes may share one library folder (``classroom serve --workers N``): a change
is made under an exclusive ``flock`` of ``.catalog.lock`` on the catalog as it is on disk
then (re-read when another process replaced it), so no process writes over another's
records; a read re-reads the file when its inode, size or mtime changed. Each unfinished
recording names its ``owner`` (the node writing it), which holds ``.owners/<owner>.lock``
while it runs: :meth:`Catalog.claim` gives a recording to a process that recovers it only
when its owner is gone (:func:`owner_alive`). The process writing a recording's segments
holds ``.owners/<id>.writing`` (:func:`hold_writing`): another node on the folder continues
a recording of the same lesson (the teacher's media moved to it) only with that lock.

Record fields: ``id, lesson, title, subject, grade, teacher, school, schools, published,
date, started_at, ended_at, duration, chapters, renditions, size, state, ...``.
States: ``recording``, ``paused``, ``interrupted`` (the process died or stopped while
recording; recovered at start), ``packaging``, ``ready``, ``failed``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .segments import fsync_dir

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
LOCK_FILE = ".catalog.lock"
OWNERS_DIR = ".owners"
RECORDINGS_DIR = "recordings"
META_FILE = "meta.json"
RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
STATES = ("recording", "paused", "interrupted", "packaging", "ready", "failed")
EDITABLE = {"title": 200, "subject": 64, "grade": 64}


def valid_id(recording_id: object) -> bool:
    return isinstance(recording_id, str) and bool(RECORDING_ID.match(recording_id))


def new_recording_id(lesson_id: str, now: float | None = None) -> str:
    """``<lesson, ASCII-safe>-<UTC yyyymmdd-HHMMSS>-<random>``: sortable, URL- and path-safe."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", lesson_id).strip("_-")[:40] or "lesson"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
    return f"{safe}-{stamp}-{secrets.token_hex(3)}"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        logger.warning("unreadable json", extra={"file": str(path), "error": str(exc)})
        return None


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _owner_lock_path(library: Path, owner: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in owner)[:120]
    return Path(library) / OWNERS_DIR / f"{safe or '_'}.lock"


def hold_owner(library: Path, owner: str) -> Any | None:
    """Hold ``owner``'s lock while this process writes the library (the open file; None
    when another live process holds it: two processes with one node id)."""
    path = _owner_lock_path(library, owner)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def hold_writing(library: Path, recording_id: str) -> Any | None:
    """Hold the recording's writer lock (``.owners/<id>.writing``) while this process
    writes its segments; None when another live process holds it. Nodes sharing the
    folder take over a recording only with this lock, so one recording never has two
    live writers (the kernel drops the lock of a process that dies)."""
    if not valid_id(recording_id):
        return None
    path = Path(library) / OWNERS_DIR / f"{recording_id}.writing"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held while the recording is written
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def owner_alive(library: Path, owner: str) -> bool:
    """Whether a live process holds ``owner``'s lock (the kernel drops it when it dies)."""
    try:
        fh = open(_owner_lock_path(library, owner))  # noqa: SIM115
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class Catalog:
    """Thread-safe and safe across processes sharing the folder (see the module doc); every
    method does file I/O: call it from an executor in async code."""

    def __init__(self, library: Path) -> None:
        self.library = Path(library)
        self.root = self.library / RECORDINGS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.library / CATALOG_FILE
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, Any]] = {}
        self._consents: dict[str, dict[str, Any]] = {}
        self._seen: tuple[int, int, int] | None = None
        self._valid = False
        self._writer = threading.RLock()  # one writing thread of this process at a time
        self._lock_fh: Any = None
        self._depth = 0
        with self._exclusive():
            if not self._valid and (self.path.exists() or any(self.root.iterdir())):
                self.rebuild()

    # ---- across processes ----------------------------------------------------------------
    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> None:
        """Read the catalog as it is on disk (a broken or missing file keeps what we have;
        it is read again once it changes)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                st = os.fstat(fh.fileno())
                self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)
                data = json.load(fh)
        except FileNotFoundError:
            self._seen, self._valid = None, False
            return
        except (ValueError, OSError) as exc:
            logger.warning("unreadable json", extra={"file": str(self.path), "error": str(exc)})
            self._valid = False
            return
        self._valid = isinstance(data, dict) and isinstance(data.get("recordings"), dict)
        if self._valid:
            self._records = {k: v for k, v in data["recordings"].items()
                             if valid_id(k) and isinstance(v, dict)}
            consents = data.get("consents")
            self._consents = consents if isinstance(consents, dict) else {}

    def _refresh(self) -> None:
        """Re-read the file if another process replaced it (call with ``_lock`` held)."""
        stamp = self._stamp()
        if stamp is not None and stamp != self._seen:
            self._load()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This thread and no other process changes the catalog (re-entrant). The wait for
        another process's lock does not hold ``_lock``, so readers here go on meanwhile."""
        with self._writer:
            if self._depth == 0:
                if self._lock_fh is None:
                    self._lock_fh = open(self.library / LOCK_FILE, "a+")  # noqa: SIM115
                fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
            self._depth += 1
            try:
                with self._lock:
                    if self._depth == 1:
                        self._refresh()
                    yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lock_fh, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (the catalog can still be read; a write opens it again)."""
        with self._writer:
            if self._lock_fh is not None and self._depth == 0:
                self._lock_fh.close()
                self._lock_fh = None

    # ---- paths ---------------------------------------------------------------------------
    def dir_of(self, recording_id: str) -> Path:
        """The recording's folder; ValueError for an id that is not a plain safe name."""
        if not valid_id(recording_id):
            raise ValueError("bad recording id")
        path = (self.root / recording_id).resolve()
        if path.parent != self.root.resolve():
            raise ValueError("bad recording id")
        return path

    # ---- records -------------------------------------------------------------------------
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        rid = record["id"]
        directory = self.dir_of(rid)
        directory.mkdir(parents=True, exist_ok=False)
        return self.put(record)

    def put(self, record: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a record (meta.json first, then the catalog)."""
        rid = record["id"]
        directory = self.dir_of(rid)
        with self._exclusive():
            record = dict(record)
            record["updated_at"] = time.time()
            if directory.is_dir():
                write_json_atomic(directory / META_FILE, record)
            self._records[rid] = record
            self._save()
            return dict(record)

    def update(self, recording_id: str, **fields: Any) -> dict[str, Any] | None:
        with self._exclusive():
            record = self._records.get(recording_id)
            if record is None:
                return None
            record = {**record, **fields}
            return self.put(record)

    def get(self, recording_id: str) -> dict[str, Any] | None:
        if not valid_id(recording_id):
            return None
        with self._lock:
            self._refresh()
            record = self._records.get(recording_id)
            return dict(record) if record is not None else None

    def claim(self, recording_id: str, owner: str,
              alive: Callable[[str], bool]) -> dict[str, Any] | None:
        """Make ``owner`` the recording's owner unless another live one has it (``alive``);
        the record, or None. One process at a time decides (under the catalog's lock)."""
        with self._exclusive():
            record = self._records.get(recording_id)
            if record is None:
                return None
            held = record.get("owner")
            if held and held != owner and alive(held):
                return None
            return record if held == owner else self.put({**record, "owner": owner})

    def take(self, recording_id: str, owner: str, accept: Callable[[dict[str, Any]], bool],
             **fields: Any) -> dict[str, Any] | None:
        """Compare-and-set across processes: if ``accept(record)``, make ``owner`` (when
        given) its owner and apply ``fields``; the new record, else None. Decided under
        the catalog's lock, so two processes never both take one recording."""
        with self._exclusive():
            record = self._records.get(recording_id)
            if record is None or not accept(dict(record)):
                return None
            return self.put({**record, **fields, **({"owner": owner} if owner else {})})

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            self._refresh()
            records = [dict(r) for r in self._records.values()]
        return sorted(records, key=lambda r: r.get("started_at") or 0, reverse=True)

    def delete(self, recording_id: str) -> bool:
        directory = self.dir_of(recording_id)
        with self._exclusive():
            existed = self._records.pop(recording_id, None) is not None
            self._save()
        if directory.is_dir():
            # rename first: a half-deleted folder is never mistaken for a recording
            trash = directory.with_name(f".deleted-{directory.name}-{secrets.token_hex(3)}")
            os.replace(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
            existed = True
        return existed

    def rebuild(self) -> int:
        """Re-read every ``recordings/<id>/meta.json`` (the catalog file lost or stale)."""
        with self._exclusive():  # no other process adds a recording meanwhile
            return self._rebuild()

    def _rebuild(self) -> int:
        records: dict[str, dict[str, Any]] = {}
        for child in sorted(self.root.iterdir()):
            if not child.is_dir() or not valid_id(child.name):
                if child.name.startswith(".deleted-"):
                    shutil.rmtree(child, ignore_errors=True)
                continue
            meta = read_json(child / META_FILE)
            if not isinstance(meta, dict) or meta.get("id") != child.name:
                logger.warning("recording folder without a valid meta.json",
                               extra={"dir": str(child)})
                continue
            records[child.name] = meta
        with self._exclusive():
            self._records = records
            old = read_json(self.path)
            if isinstance(old, dict) and isinstance(old.get("consents"), dict):
                self._consents = old["consents"]
            self._save()
        return len(records)

    # ---- consent (告知-同意) ----------------------------------------------------------------
    def consent(self, school: str) -> dict[str, Any] | None:
        with self._lock:
            self._refresh()
            entry = self._consents.get(school)
            return dict(entry) if entry else None

    def add_consent(self, school: str, **fields: Any) -> dict[str, Any]:
        with self._exclusive():
            entry = self._consents.get(school)
            if entry is None:
                entry = {"school": school, "at": time.time(), **fields}
                self._consents[school] = entry
                self._save()
            return dict(entry)

    def consents(self) -> list[dict[str, Any]]:
        with self._lock:
            self._refresh()
            return [dict(v) for v in self._consents.values()]

    # ---- retention and quota ------------------------------------------------------------------
    def usage(self) -> int:
        return dir_size(self.root)

    def enforce(self, *, retention_days: float | None, quota_bytes: int | None,
                busy: Iterable[str], now: float | None = None) -> list[str]:
        """Delete expired recordings, then the oldest until under quota; never a busy one
        (being written, packaged or played) nor one not yet finished. Returns the ids."""
        now = now or time.time()
        busy = set(busy)
        deleted: list[str] = []
        candidates = [r for r in self.list()
                      if r["id"] not in busy and r.get("state") in ("ready", "failed")]
        candidates.sort(key=lambda r: r.get("started_at") or 0)
        if retention_days is not None and retention_days > 0:
            limit = now - retention_days * 86400
            for record in list(candidates):
                if (record.get("ended_at") or record.get("started_at") or now) < limit:
                    self.delete(record["id"])
                    deleted.append(record["id"])
                    candidates.remove(record)
        if quota_bytes is not None and quota_bytes > 0:
            used = self.usage()
            for record in candidates:
                if used <= quota_bytes:
                    break
                size = dir_size(self.dir_of(record["id"]))
                self.delete(record["id"])
                deleted.append(record["id"])
                used -= size
        return deleted

    def _save(self) -> None:
        with self._exclusive():
            write_json_atomic(self.path, {"version": 1, "recordings": self._records,
                                          "consents": self._consents})
            self._seen, self._valid = self._stamp(), True
