"""A node's recording library: the lessons being recorded, packaging, recovery, retention.

Pure library code with typed inputs: it knows a lesson only as :class:`LessonInfo`, the
relay only as a :class:`SinkHost` (``attach_sink`` / ``detach_sink`` of the recorder's
:class:`~media_relay.tracks.KindSink` s; ``media_relay.Relay`` is one), and tells its
owner that a lesson's recording state changed through one callback (``on_change``). It
imports nothing from signaling: the signaling side (``signaling/recordings``) decides
*when* to record (lesson events, the relay's publisher), who may do what (the
authorization table), and turns :meth:`RecordingLibrary.state` into messages.

* :meth:`~RecordingLibrary.ensure` records a lesson (a
  :class:`~recording.recorder.Recorder` attached as two sinks; nothing is re-encoded), or
  re-attaches its recorder to a new source (a teacher who reconnected).
* While a lesson is recorded, a background worker transcodes each ~``chunk_seconds`` of
  closed segments for replay (``python -m recording.packager --chunks-only``, a child at
  the lowest priority, one at a time on the node), so that when :meth:`stop` closes the
  last segment only the tail, the audio and the playlists remain for the final packaging
  (the same child, niced).
* At :meth:`open`, recordings left ``recording``/``paused``/``packaging`` by a killed
  process are recovered (segments indexed, the torn segment salvaged) and packaged. With
  several processes on one library folder (``--workers``) a process recovers only its own
  (``owner``, :attr:`RecordingConfig.owner`) and those whose owner is gone.
* Retention (days) and a disk quota run every ``retention_interval`` and after each
  packaging; they never delete a recording being written, packaged or played.
* Consent (告知-同意): before the first recording of a school its local teacher
  acknowledges a notice, kept in the catalog with who and when.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import metrics
from .catalog import Catalog, dir_size, hold_owner, hold_writing, new_recording_id, owner_alive
from .chapters import CHAPTER_TYPES, append_event
from .packager import REPLAY_DIR
from .recorder import LINES, Recorder, RecorderConfig
from .recovery import recover_segments
from .segments import read_index
from .tracks import TRACK_DIR

if TYPE_CHECKING:
    from media_relay.tracks import KindSink

logger = logging.getLogger(__name__)

_UNFINISHED = ("recording", "paused", "interrupted", "packaging")
_RESUMABLE = ("recording", "paused", "interrupted")
"""States a recording can continue from (as a new part), here or on another node."""
CHAPTER_FIELDS = ("type", "round", "peer_id", "name", "school", "on_stage")
"""The fields of a lesson event kept in the recording's chapter log."""
MEDIA_FILE = re.compile(
    r"^(hls/master\.m3u8|hls/[A-Za-z0-9_]{1,16}/(index\.m3u8|init\.mp4|s\d{5}\.m4s)"
    r"|poster\.jpg|thumbs/t\d{5}\.jpg|thumbs\.vtt|chapters\.vtt|lesson\.mp4"
    r"|share\.mp4|stage\.mp4)$")
"""The files of a packaged recording that replay links may serve (``replay/...``)."""
# hls.js (Apache-2.0) shipped inside the package, so an installed wheel serves the replay page
# with no repo checkout and no npm: the light build (playback + ABR, without subtitles/EME: a
# third less to download). package.json pins the version; scripts/vendor-hls refreshes the copy.
HLS_JS = Path(__file__).resolve().parent / "vendor" / "hls.light.min.js"


@dataclass
class RecordingConfig:
    enabled: bool = True
    """Record every live lesson (the teacher can pause)."""
    retention_days: float | None = None
    """Delete finished recordings older than this (None: keep)."""
    quota_bytes: int | None = None
    """Delete the oldest finished recordings while the library is over this (None: no quota)."""
    retention_interval: float = 3600.0
    play_window: float = 900.0
    """A recording whose media was served this recently counts as being played."""
    link_ttl: int = 6 * 3600
    """Lifetime of a signed replay link (seconds)."""
    package: bool = True
    packager_nice: int = 10
    incremental: bool = True
    """Transcode for replay while the lesson is recorded (a chunk at a time)."""
    chunk_seconds: float = 60.0
    chunk_nice: int = 19
    chunk_check: float = 5.0
    """Seconds between looks at the recorder for a complete chunk."""
    packager_args: list[str] = field(default_factory=list)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    resume_seconds: float = 600.0
    """A recording cut by a restart while its lesson stayed live waits this long for the
    teacher's media to return (then it continues as a new part), else it is packaged."""
    owner: str = ""
    """Who writes this library's new recordings (the node id): processes sharing the folder
    recover only their own unfinished recordings and those whose owner is gone."""


@dataclass(frozen=True)
class LessonInfo:
    """What a recording's record takes from its lesson."""

    id: str
    title: str = ""
    teacher: str = ""
    school: str = ""
    started_at: float | None = None
    """When the lesson went live: its recordings on every node share one ``group``."""


def group_id(lesson_id: str, started_at: float | None) -> str | None:
    """The recording group of one live session of a lesson (None: not known). Every node
    that records the session (the origin moved) derives the same id from the lesson
    store, so the library lists their recordings as one, part after part."""
    return f"{lesson_id}@{started_at:.3f}" if started_at else None


class SinkHost(Protocol):
    """Where a recorder's sinks attach: a lesson's media (``media_relay.Relay``)."""

    def attach_sink(self, lesson_id: str, sink: KindSink) -> None: ...

    def detach_sink(self, lesson_id: str, sink: KindSink) -> None: ...


class NotRecording(Exception):
    """Pause/resume of a lesson that is not being recorded."""


class ActiveRecording:
    def __init__(self, record: dict[str, Any], recorder: Recorder, directory: Path,
                 lines: dict[str, Recorder] | None = None) -> None:
        self.id: str = record["id"]
        self.lesson: str = record["lesson"]
        self.record = record
        self.recorder = recorder
        self.lines = lines or {}
        """The share and stage recorders (``tracks/<line>/``), on the teacher's timeline."""
        self.directory = directory
        self.writing: Any = None
        """This process's writer lock of the recording (catalog.hold_writing)."""
        self.stopping = False
        self.worker: asyncio.Task[None] | None = None
        self.covered_ms = 0.0
        """How much of the recording the background worker has transcoded."""


class RecordingLibrary:
    """The library folder of one node and the recordings it writes (see the module doc)."""

    def __init__(self, config: RecordingConfig | None = None) -> None:
        self.config = config or RecordingConfig()
        self.catalog: Catalog | None = None
        self.active: dict[str, ActiveRecording] = {}  # lesson -> recording
        self.packaging: set[str] = set()
        self.played: dict[str, float] = {}
        self._media: SinkHost | None = None
        self._on_change: Callable[[str], Awaitable[None]] | None = None
        self._schools: dict[str, set[str]] = {}  # lesson -> schools seen in it
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._package_lock = asyncio.Lock()  # one final packaging at a time on the node
        self._chunk_lock = asyncio.Lock()  # one chunk job at a time on the node
        self._retention_task: asyncio.Task[None] | None = None
        self.resumable: dict[str, str] = {}
        """lesson -> recording cut by a restart, waiting for the teacher's media."""
        self.closing = False
        self._owner_lock: Any = None

    # ---- lifetime ------------------------------------------------------------------------
    async def open(self, root: Path, media: SinkHost,
                   on_change: Callable[[str], Awaitable[None]],
                   lesson_live: Callable[[str], Awaitable[bool]] | None = None) -> None:
        """Open the library at ``root``, recover what a killed process left, start retention.
        ``on_change(lesson_id)`` is awaited whenever :meth:`state` of a lesson changed;
        ``lesson_live(lesson_id)``: whether a lesson is still live (its recording, cut by
        the restart, then continues as a new part when the teacher's media returns)."""
        self._media = media
        self._on_change = on_change
        self.catalog = await asyncio.to_thread(Catalog, root)
        if self.config.owner:
            self._owner_lock = await asyncio.to_thread(hold_owner, root, self.config.owner)
            if self._owner_lock is None:
                logger.warning("another live process has this node id: recovering nothing",
                               extra={"owner": self.config.owner})
        await self._recover(lesson_live)
        self._retention_task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def close(self) -> None:
        self.closing = True
        if self._retention_task is not None:
            self._retention_task.cancel()
        for lesson_id in list(self.active):
            # not packaged now (shutdown must be quick): the next start recovers it
            await self.stop(lesson_id, package=False, state="interrupted")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owner_lock is not None:
            self._owner_lock.close()  # after the last write: another process may recover now
            self._owner_lock = None
        if self.catalog is not None:
            self.catalog.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the library closes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending(self) -> int:
        """Background jobs still running (packaging, retention passes, chapter writes)."""
        return len(self._tasks)

    @property
    def _catalog(self) -> Catalog:
        assert self.catalog is not None, "library not open"
        return self.catalog

    async def _changed(self, lesson_id: str) -> None:
        if self._on_change is not None:
            await self._on_change(lesson_id)

    def _lock(self, lesson_id: str) -> asyncio.Lock:
        lock = self._locks.get(lesson_id)
        if lock is None:
            lock = self._locks[lesson_id] = asyncio.Lock()
        return lock

    # ---- recording -----------------------------------------------------------------------
    async def ensure(self, lesson_id: str, *, media_here: Callable[[], bool],
                     live_lesson: Callable[[], Awaitable[LessonInfo | None]]) -> None:
        """Record the lesson if its media is here (``media_here()``) and it is live
        (``live_lesson()`` returns it, else None); re-attach after a reconnect. Both are
        asked under the lesson's lock, so a :meth:`stop` never passes a start."""
        async with self._lock(lesson_id):
            if self.closing or not media_here():
                return
            active = self.active.get(lesson_id)
            if active is not None:
                self._attach(active)
                return
            if not self.config.enabled:
                return
            lesson = await live_lesson()
            if lesson is None:
                return
            group = group_id(lesson_id, lesson.started_at)
            rid = self.resumable.pop(lesson_id, None)
            if not (rid is not None and await self._continue(lesson_id, rid)) and not (
                    group and await self._adopt(lesson_id, group)):
                await self._create(lesson_id, lesson, group)
        await self._changed(lesson_id)

    async def _adopt(self, lesson_id: str, group: str) -> bool:
        """Continue here, as a new part, a recording of this live session that no live
        process writes (its node died, or stopped it) in this library folder: the lesson's
        origin moved between nodes sharing the folder (``--workers``)."""
        mine = {a.id for a in self.active.values()}
        for record in await asyncio.to_thread(self._catalog.list):  # newest first
            if (record.get("lesson") == lesson_id and record.get("group") == group
                    and record.get("state") in _RESUMABLE and record["id"] not in mine
                    and await self._continue(lesson_id, record["id"], adopt=group)):
                return True
        return False

    async def _create(self, lesson_id: str, lesson: LessonInfo,
                      group: str | None = None) -> None:
        """A new recording of the lesson (its record in the catalog, its recorders)."""
        catalog = self._catalog
        rid = new_recording_id(lesson_id)
        now = time.time()
        schools = sorted(self._schools.get(lesson_id, set()) | (
            {lesson.school} if lesson.school else set()))
        record = {
            "id": rid, "lesson": lesson_id, "title": lesson.title or "",
            "subject": "", "grade": "", "teacher": lesson.teacher, "school": lesson.school,
            "schools": schools, "published": False,
            "date": time.strftime("%Y-%m-%d", time.localtime(now)),
            "started_at": now, "ended_at": None, "duration": 0.0, "chapters": [],
            "renditions": [], "size": 0, "state": "recording", "segments": 0,
            "errors": 0, "consents": [c for c in catalog.consents()
                                      if c.get("school") in schools],
        }
        if self.config.owner:
            record["owner"] = self.config.owner
        if group:
            record["group"] = group
        record["parts"] = [{"start": 0.0, "started_at": now}]
        directory = catalog.dir_of(rid)
        await asyncio.to_thread(catalog.create, record)
        writing = await asyncio.to_thread(hold_writing, catalog.library, rid)
        self._start(record, directory, writing=writing)
        logger.info("recording started", extra={"lesson": lesson_id, "recording": rid})

    def _start(self, record: dict[str, Any], directory: Path, first_seq: int = 1,
               offset_ms: int = 0, line_seqs: dict[str, int] | None = None,
               writing: Any = None) -> None:
        """The teacher's recorder, a recorder per line (share, stage) on its timeline."""
        cfg = self.config.recorder
        recorder = Recorder(directory, config=cfg, first_seq=first_seq,
                            time_offset_ms=offset_ms)
        lines = {name: Recorder(directory / TRACK_DIR / name, config=cfg, line=name,
                                clock=recorder, first_seq=(line_seqs or {}).get(name, 1))
                 for name in LINES}
        active = ActiveRecording(record, recorder, directory, lines)
        active.writing = writing
        self.active[record["lesson"]] = active
        self._attach(active)
        if self.config.package and self.config.incremental:
            active.worker = self.spawn(self._chunk_worker(active))

    async def _continue(self, lesson_id: str, rid: str, *, adopt: str | None = None) -> bool:
        """The teacher's media is back after a restart: the recording goes on, a new part
        right after the last segment of the one before (one recording, parts in sequence).
        ``adopt`` (the lesson's group): the recording was left by another node on this
        folder, whose torn segment is salvaged first. Taken only with the recording's
        writer lock, under the catalog's lock; False when another node has it."""
        catalog = self._catalog
        directory = catalog.dir_of(rid)
        me = self.config.owner
        held: list[Any] = []

        def accept(record: dict[str, Any]) -> bool:
            if record.get("state") not in _RESUMABLE:
                return False
            if adopt is None and (record.get("owner") or me) != me:
                return False  # another node on the folder took it over meanwhile
            if adopt is not None and (record.get("group") != adopt
                                      or record.get("lesson") != lesson_id):
                return False
            lock = hold_writing(catalog.library, rid)
            if lock is None:
                return False  # a live process writes it
            held.append(lock)
            return True

        try:
            taken = await asyncio.to_thread(catalog.take, rid, me, accept, state="recording",
                                            ended_at=None)
        except BaseException:
            for lock in held:
                lock.close()
            raise
        if taken is None:
            for lock in held:
                lock.close()
            logger.info("recording not continued: another node has it",
                        extra={"lesson": lesson_id, "recording": rid})
            return False
        record = taken
        if adopt is not None:
            await asyncio.to_thread(recover_segments, directory)
            for name in LINES:
                if (directory / TRACK_DIR / name).is_dir():
                    await asyncio.to_thread(recover_segments, directory / TRACK_DIR / name)

        def last_segments() -> tuple[int, int, dict[str, int]]:
            segs = read_index(directory)
            seqs = {}
            ends = [segs[-1].end_ms] if segs else []
            for name in LINES:
                line = read_index(directory / TRACK_DIR / name)
                seqs[name] = line[-1].seq + 1 if line else 1
                ends += [line[-1].end_ms] if line else []
            return (segs[-1].seq + 1 if segs else 1, max(ends) + 1 if segs else 0, seqs)

        first_seq, offset_ms, seqs = await asyncio.to_thread(last_segments)
        first_ms = (await asyncio.to_thread(read_index, directory) or [None])[0]
        start = (offset_ms - first_ms.start_ms) / 1000 if first_ms else 0.0
        parts = list(record.get("parts") or [{"start": 0.0,
                                              "started_at": record.get("started_at")}])
        parts.append({"start": round(start, 3), "started_at": time.time()})
        owner = {"owner": self.config.owner} if self.config.owner else {}
        record = await asyncio.to_thread(
            catalog.update, rid, state="recording", ended_at=None, parts=parts,
            **owner) or record
        await asyncio.to_thread(append_event, directory,
                                {"t": offset_ms, "type": "recording-part",
                                 "part": len(parts)})
        self._start(record, directory, first_seq, offset_ms, seqs, writing=held[0])
        logger.info("recording continues", extra={"lesson": lesson_id, "recording": rid,
                                                   "part": len(parts),
                                                   "taken_over": adopt is not None})
        return True

    @staticmethod
    def _sinks(active: ActiveRecording) -> list[KindSink]:
        return [s for r in (active.recorder, *active.lines.values()) for s in r.sinks]

    def _attach(self, active: ActiveRecording) -> None:
        assert self._media is not None
        for sink in self._sinks(active):
            try:
                self._media.attach_sink(active.lesson, sink)
            except Exception:
                logger.exception("recorder could not attach", extra={
                    "lesson": active.lesson, "line": getattr(sink, "line", sink.kind)})

    async def stop(self, lesson_id: str, *, package: bool, state: str = "packaging") -> None:
        """Stop recording the lesson (the last segment is closed), then package it."""
        catalog = self._catalog
        async with self._lock(lesson_id):
            active = self.active.pop(lesson_id, None)
            waiting = self.resumable.pop(lesson_id, None)
            if active is None:
                if waiting is not None and package:  # ended while the teacher was away
                    self.spawn(self._package_waiting(waiting))
                return
            active.stopping = True
            if active.worker is not None:
                # a chunk job still running is stopped (a nice-19 job may be starved on a
                # busy node; the final packaging, less niced, redoes at most that chunk)
                active.worker.cancel()
            try:
                assert self._media is not None
                for sink in self._sinks(active):
                    self._media.detach_sink(lesson_id, sink)
            except Exception:
                logger.exception("recorder detach failed", extra={"lesson": lesson_id})
            for line in active.lines.values():
                await line.stop()
            segments = await active.recorder.stop()
            stats = active.recorder.stats()
            if len(active.record.get("parts") or []) > 1:  # every part, not this one's
                segments = await asyncio.to_thread(read_index, active.directory)
                stats["bytes"] = sum(s.bytes for s in segments)
            fields = {
                "ended_at": time.time(), "segments": len(segments),
                "duration": round((segments[-1].end_ms - segments[0].start_ms) / 1000, 3)
                if segments else 0.0,
                "size": stats["bytes"], "errors": stats["errors"],
                "schools": sorted(set(active.record.get("schools", []))
                                  | self._schools.get(lesson_id, set())),
                "state": state if segments else "failed",
            }
            if not segments:
                fields["error"] = "nothing was recorded"
            await asyncio.to_thread(catalog.update, active.id, **fields)
            if active.writing is not None:  # after the last write: others may take it now
                active.writing.close()
                active.writing = None
            logger.info("recording stopped", extra={"lesson": lesson_id,
                                                     "recording": active.id, **stats})
        if not self.closing:
            await self._changed(lesson_id)
        if package and segments:
            self.spawn(self.package(active.id))

    def chapter_event(self, lesson_id: str, event: dict[str, Any]) -> None:
        """A lesson event of :data:`~recording.chapters.CHAPTER_TYPES` (quiz rounds, the
        stage, ...) into the recording's chapter log, at now on its timeline."""
        active = self.active.get(lesson_id)
        if active is None or event.get("type") not in CHAPTER_TYPES:
            return
        entry = {k: v for k, v in event.items() if k in CHAPTER_FIELDS}
        entry["t"] = active.recorder.timeline_ms()
        self.spawn(asyncio.to_thread(append_event, active.directory, entry))

    async def pause(self, lesson_id: str) -> None:
        active = self.active.get(lesson_id)
        if active is None:
            raise NotRecording(lesson_id)
        at = time.monotonic()
        for recorder in (active.recorder, *active.lines.values()):
            recorder.pause(at)
        await asyncio.to_thread(self._catalog.update, active.id, state="paused")
        await self._changed(lesson_id)

    async def resume(self, lesson_id: str) -> None:
        active = self.active.get(lesson_id)
        if active is None:
            raise NotRecording(lesson_id)
        if active.recorder.paused:
            at = time.monotonic()
            for recorder in (active.recorder, *active.lines.values()):
                recorder.resume(at)
            self.chapter_event(lesson_id, {"type": "recording-resumed"})
        await asyncio.to_thread(self._catalog.update, active.id, state="recording")
        await self._changed(lesson_id)

    # ---- schools and consent ------------------------------------------------------------
    def note_school(self, lesson_id: str, school: str) -> None:
        """A classroom or teacher of ``school`` joined the lesson: its recording lists it."""
        self._schools.setdefault(lesson_id, set()).add(school)
        active = self.active.get(lesson_id)
        if active is not None and school not in active.record["schools"]:
            active.record["schools"] = sorted({*active.record["schools"], school})
            self.spawn(asyncio.to_thread(self._catalog.update, active.id,
                                         schools=active.record["schools"]))

    def consent_required(self, school: str) -> bool:
        return self._catalog.consent(school) is None

    async def add_consent(self, school: str, *, by: str, role: str, lesson_id: str) -> None:
        """The school's teacher acknowledged the recording notice (kept with who and when)."""
        catalog = self._catalog
        active = self.active.get(lesson_id)
        await asyncio.to_thread(catalog.add_consent, school, by=by, role=role,
                                lesson=lesson_id, recording=active.id if active else None)
        if active is not None:
            consent = catalog.consent(school)
            active.record.setdefault("consents", []).append(consent)
            await asyncio.to_thread(catalog.update, active.id,
                                    consents=active.record["consents"])
        await self._changed(lesson_id)

    def state(self, lesson_id: str) -> dict[str, Any]:
        """``{state: off|recording|paused, recording_id, consent_schools}`` of the lesson."""
        active = self.active.get(lesson_id)
        if active is None:
            return {"state": "off", "recording_id": None}
        return {"state": "paused" if active.recorder.paused else "recording",
                "recording_id": active.id,
                "consent_schools": sorted(c["school"] for c in self.catalog.consents())
                if self.catalog else []}

    # ---- packaging -----------------------------------------------------------------------
    def _packager_args(self) -> list[str]:
        return ["--chunk-seconds", str(self.config.chunk_seconds), *self.config.packager_args]

    async def _run_packager(self, directory: Path, args: list[str],
                            nice: int) -> tuple[int, dict[str, Any]]:
        """Run ``python -m recording.packager`` in a child at ``nice``; (exit code, summary)."""

        def lower_priority() -> None:  # runs in the child before exec
            if nice:
                os.nice(nice)

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "recording.packager", str(directory), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=lower_priority)
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:  # shutting down: the next start takes it up again
            proc.kill()
            await proc.wait()
            raise
        try:
            summary = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            summary = {"error": err.decode(errors="replace")[-500:] or "no output"}
        return proc.returncode or 0, summary

    async def _chunk_worker(self, active: ActiveRecording) -> None:
        """While the lesson is recorded, transcode each complete chunk of closed segments."""
        chunk_ms = self.config.chunk_seconds * 1000
        while not active.stopping and not self.closing:
            await asyncio.sleep(self.config.chunk_check)
            segments = active.recorder.segments
            if not segments or active.stopping:
                continue
            recorded = segments[-1].end_ms - segments[0].start_ms
            if recorded - active.covered_ms < chunk_ms:
                continue
            async with self._chunk_lock:
                if active.stopping:
                    return  # the final packaging takes it from here
                started = time.monotonic()
                try:
                    code, summary = await self._run_packager(
                        active.directory, ["--chunks-only", *self._packager_args()],
                        self.config.chunk_nice)
                except OSError as exc:  # no process could be started (out of memory, ...)
                    code, summary = 1, {"error": str(exc)}
            if code != 0 or "error" in summary:
                metrics.ERRORS.labels(reason="packaging").inc()
                logger.warning("chunk packaging failed", extra={
                    "recording": active.id, "error": summary.get("error")})
                active.covered_ms = recorded  # try again one chunk later
                continue
            active.covered_ms = float(summary["covered"]) * 1000
            logger.info("chunks packaged", extra={
                "recording": active.id, "made": summary["made"],
                "covered": summary["covered"], "seconds": round(time.monotonic() - started, 2)})

    async def package(self, recording_id: str) -> dict[str, Any] | None:
        """Package one recording in a child process; updates the catalog."""
        catalog = self._catalog
        async with self._package_lock:
            self.packaging.add(recording_id)
            started = time.monotonic()
            try:
                directory = catalog.dir_of(recording_id)
                await asyncio.to_thread(catalog.update, recording_id, state="packaging")
                code, summary = await self._run_packager(
                    directory, self._packager_args(), self.config.packager_nice)
                seconds = time.monotonic() - started
                if code != 0 or "error" in summary:
                    metrics.ERRORS.labels(reason="packaging").inc()
                    logger.warning("packaging failed", extra={
                        "recording": recording_id, "error": summary.get("error")})
                    await asyncio.to_thread(catalog.update, recording_id, state="failed",
                                            error=str(summary.get("error"))[:500])
                    return None
                metrics.PACKAGING_SECONDS.observe(seconds)
                record = catalog.get(recording_id) or {}
                size = await asyncio.to_thread(dir_size, directory)
                ended = record.get("ended_at")
                await asyncio.to_thread(
                    catalog.update, recording_id, state="ready",
                    duration=summary["duration"], chapters=summary["chapters"],
                    renditions=[{k: r[k] for k in ("name", "kind", "width", "height",
                                                   "average_bps", "peak_bps") if k in r}
                                for r in summary["renditions"]],
                    lines=summary.get("lines") or [],
                    size=size, poster=summary["poster"], thumbnails=summary["thumbnails"],
                    packaging_seconds=round(seconds, 3), audio=summary.get("audio"),
                    chunks=summary.get("chunks"), packaged_at=time.time(),
                    ready_after_end=round(time.time() - ended, 3) if ended else None,
                    title=record.get("title") or _default_title(record))
                logger.info("recording packaged", extra={
                    "recording": recording_id, "seconds": round(seconds, 2),
                    "chunks": summary.get("chunks")})
                return summary
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.ERRORS.labels(reason="packaging").inc()
                logger.exception("packaging failed", extra={"recording": recording_id})
                return None
            finally:
                self.packaging.discard(recording_id)
                if not self.closing:
                    self.spawn(self.enforce_retention())

    # ---- recovery, retention -------------------------------------------------------------
    async def _recover(self, lesson_live: Callable[[str], Awaitable[bool]] | None) -> None:
        catalog = self._catalog
        me = self.config.owner
        for record in catalog.list():
            if record.get("state") not in _UNFINISHED:
                continue
            rid = record["id"]
            if me:  # another process on this folder may be writing it
                if self._owner_lock is None:
                    continue
                claimed = await asyncio.to_thread(
                    catalog.claim, rid, me, functools.partial(owner_alive, catalog.library))
                if claimed is None or claimed.get("state") not in _UNFINISHED:
                    continue
                record = claimed
            writing = await asyncio.to_thread(hold_writing, catalog.library, rid)
            if writing is None:
                continue  # another node on the folder took it over and writes it
            try:
                await self._recover_one(record, lesson_live)
            finally:
                writing.close()

    async def _recover_one(self, record: dict[str, Any],
                           lesson_live: Callable[[str], Awaitable[bool]] | None) -> None:
        """Recover one unfinished recording (with its writer lock held): wait for its
        lesson, or package it."""
        catalog = self._catalog
        rid = record["id"]
        directory = catalog.dir_of(rid)
        segments = await asyncio.to_thread(recover_segments, directory)
        for name in LINES:
            if (directory / TRACK_DIR / name).is_dir():
                await asyncio.to_thread(recover_segments, directory / TRACK_DIR / name)
        metrics.RECOVERED.inc()
        lesson = record.get("lesson") or ""
        if (segments and record.get("state") != "packaging" and lesson_live is not None
                and lesson not in self.resumable and await lesson_live(lesson)):
            # cut by the restart, the lesson goes on: wait for the teacher's media
            self.resumable[lesson] = rid
            await asyncio.to_thread(catalog.update, rid, state="interrupted",
                                    segments=len(segments), recovered=True)
            self.spawn(self._resume_deadline(lesson, rid))
            logger.info("recording waits for its lesson", extra={"recording": rid})
            return
        if not segments:
            await asyncio.to_thread(catalog.update, rid, state="failed",
                                    error="nothing was recorded")
            return
        duration = (segments[-1].end_ms - segments[0].start_ms) / 1000
        await asyncio.to_thread(
            catalog.update, rid, state="packaging", segments=len(segments),
            duration=round(duration, 3), recovered=True,
            ended_at=record.get("ended_at") or (record.get("started_at") or 0) + duration,
            size=sum(s.bytes for s in segments))
        logger.info("recording recovered", extra={"recording": rid,
                                                   "segments": len(segments)})
        if self.config.package:
            self.spawn(self.package(rid))

    async def _resume_deadline(self, lesson_id: str, rid: str) -> None:
        """The teacher's media did not return in time: package what was recorded."""
        await asyncio.sleep(self.config.resume_seconds)
        async with self._lock(lesson_id):
            if self.resumable.get(lesson_id) != rid:
                return
            del self.resumable[lesson_id]
        if self.config.package:
            await self._package_waiting(rid)

    async def _package_waiting(self, rid: str) -> None:
        """Package a recording that waited here for its teacher, unless another node on
        the folder took it over meanwhile (it is that node's to finish)."""
        me = self.config.owner
        taken = await asyncio.to_thread(
            self._catalog.take, rid, "",
            lambda r: r.get("state") in _RESUMABLE and (r.get("owner") or me) == me,
            state="packaging")
        if taken is not None:
            await self.package(rid)

    async def hand_off(self, lesson_id: str) -> None:
        """The lesson's origin (its teacher's media) moved to another live node, which
        records it from there: the part written here is finished and packaged (listed
        with the other node's in one entry, ``group``); one waiting here since a restart
        is packaged now instead of after ``resume_seconds``."""
        if lesson_id in self.active:
            await self.stop(lesson_id, package=self.config.package)
            return
        async with self._lock(lesson_id):
            rid = self.resumable.pop(lesson_id, None)
        if rid is not None and self.config.package:
            await self._package_waiting(rid)

    def writing(self) -> set[str]:
        """Recordings being written or packaged (they cannot be deleted)."""
        return ({a.id for a in self.active.values()} | set(self.packaging)
                | set(self.resumable.values()))

    def busy(self) -> set[str]:
        """Recordings retention must spare: written, packaged, or played recently."""
        now = time.monotonic()
        played = {rid for rid, at in self.played.items() if now - at < self.config.play_window}
        return self.writing() | played

    async def enforce_retention(self) -> list[str]:
        if self.catalog is None or (self.config.retention_days is None
                                    and self.config.quota_bytes is None):
            return []
        deleted = await asyncio.to_thread(
            self.catalog.enforce, retention_days=self.config.retention_days,
            quota_bytes=self.config.quota_bytes, busy=self.busy())
        if deleted:
            logger.info("retention deleted recordings", extra={"recordings": deleted})
        return deleted

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.retention_interval)
            try:
                await self.enforce_retention()
            except Exception:
                logger.exception("retention pass failed")

    # ---- replay files ---------------------------------------------------------------------
    def replay_file(self, recording_id: str, name: str) -> Path | None:
        """The packaged file ``name`` of a recording (one of :data:`MEDIA_FILE`), resolved
        inside its ``replay/`` folder, else None; counts the recording as being played."""
        catalog = self._catalog
        if not MEDIA_FILE.match(name) or catalog.get(recording_id) is None:
            return None
        root = (catalog.dir_of(recording_id) / REPLAY_DIR).resolve()
        try:
            path = (root / name).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not path.is_relative_to(root) or not path.is_file():
            return None
        self.played[recording_id] = time.monotonic()
        return path


def _default_title(record: dict[str, Any]) -> str:
    who = record.get("teacher") or record.get("lesson") or ""
    return f"{who} {record.get('date', '')}".strip()
