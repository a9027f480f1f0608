"""Recording as a signaling feature: every live lesson lands in the library by itself.

* A lesson that is ``live`` and whose teacher's media flows into this node is recorded:
  a :class:`~recording.recorder.Recorder` is attached to the relay with
  ``relay.attach_sink`` (it is just another subscriber; nothing is re-encoded). A teacher
  who reconnects gets the recorder attached to the new source (``media`` event).
* The teacher may pause and resume (``recording-pause`` / ``recording-resume``); every
  socket of the lesson hears ``recording {state, recording_id, consent_schools}``, and a
  classroom's ``welcome`` carries ``recording`` and ``recording_consent_required``: before
  the first recording of a school its local teacher acknowledges a notice (告知-同意,
  ``recording-consent``), kept in the catalog with who and when.
* While the lesson is recorded, a background worker transcodes each ~``chunk_seconds`` of
  closed segments for replay (``python -m recording.packager --chunks-only``, a child at
  the lowest priority, one at a time on the node), so that when ``lesson`` ``ended`` stops
  the recorder (the last segment is closed) only the tail, the audio and the playlists
  remain for the final packaging (the same child, niced).
* At start, recordings left ``recording``/``paused``/``packaging`` by a killed process are
  recovered (segments indexed, the torn segment salvaged) and packaged.
* Retention (days) and a disk quota run every ``retention_interval`` and after each
  packaging; they never delete a recording being written, packaged or played.

HTTP (``routes.py``): ``/api/recordings...``, signed media URLs, ``/vendor/hls.min.js``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from signaling.auth import Role
from signaling.features import Feature
from signaling.protocol import FieldSpec, MessageSpec

from . import metrics
from .catalog import Catalog, new_recording_id
from .chapters import CHAPTER_TYPES, append_event
from .recorder import Recorder, RecorderConfig, recover_segments

if TYPE_CHECKING:
    from signaling.app import Node
    from signaling.config import Config
    from signaling.handlers import Session
    from signaling.protocol import Message

logger = logging.getLogger(__name__)

_UNFINISHED = ("recording", "paused", "interrupted", "packaging")


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


class ActiveRecording:
    def __init__(self, record: dict[str, Any], recorder: Recorder, directory: Path) -> None:
        self.id: str = record["id"]
        self.lesson: str = record["lesson"]
        self.record = record
        self.recorder = recorder
        self.directory = directory
        self.stopping = False
        self.worker: asyncio.Task[None] | None = None
        self.covered_ms = 0.0
        """How much of the recording the background worker has transcoded."""

    def now_ms(self) -> int:
        writer = self.recorder._writer
        if writer.origin is None:
            return writer.offset_ms
        paused = writer.pause_total
        if writer.paused_at is not None:
            paused += time.monotonic() - writer.paused_at
        return int((time.monotonic() - writer.origin - paused) * 1000) + writer.offset_ms


class RecordingFeature(Feature):
    name = "recording"
    schemas = {
        "recording-pause": MessageSpec(frozenset({Role.TEACHER})),
        "recording-resume": MessageSpec(frozenset({Role.TEACHER})),
        "recording-consent": MessageSpec(
            frozenset({Role.CLASSROOM, Role.TEACHER}),
            {"name": FieldSpec(str, False, 100)}),
    }

    def __init__(self, config: RecordingConfig | None = None) -> None:
        self.config = config or RecordingConfig()

        self.node: Node | None = None
        self.catalog: Catalog | None = None
        self.active: dict[str, ActiveRecording] = {}  # lesson -> recording
        self.packaging: set[str] = set()
        self.played: dict[str, float] = {}
        self._schools: dict[str, set[str]] = {}  # lesson -> schools seen in it
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._package_lock = asyncio.Lock()  # one final packaging at a time on the node
        self._chunk_lock = asyncio.Lock()  # one chunk job at a time on the node
        self._retention_task: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    def from_config(cls, config: Config) -> RecordingFeature:
        """Recording on/off, retention and quota from the node's config (``classroom serve``
        flags, environment defaults); ``CLASSROOM_PACKAGE_CHUNK_SECONDS`` sets the size of
        the chunks transcoded while recording (``0``: package only after the lesson)."""
        chunk = os.environ.get("CLASSROOM_PACKAGE_CHUNK_SECONDS", "").strip()
        try:
            chunk_seconds = float(chunk) if chunk else 60.0
        except ValueError:
            logger.warning("CLASSROOM_PACKAGE_CHUNK_SECONDS is not a number; using 60",
                           extra={"value": chunk})
            chunk_seconds = 60.0
        gb = config.library_quota_gb
        return cls(RecordingConfig(
            enabled=config.recording,
            retention_days=config.retention_days,
            quota_bytes=int(gb * 1e9) if gb else None,
            incremental=chunk_seconds > 0,
            chunk_seconds=chunk_seconds if chunk_seconds > 0 else 60.0,
        ))

    # ---- lifetime ------------------------------------------------------------------------
    async def start(self, node: Node) -> None:
        self.node = node
        self.catalog = await asyncio.to_thread(Catalog, node.config.library)
        node.hub.add_listener(self._on_event)
        await self._recover()
        self._retention_task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def close(self) -> None:
        self._closing = True
        if self._retention_task is not None:
            self._retention_task.cancel()
        for lesson_id in list(self.active):
            # not packaged now (shutdown must be quick): the next start recovers it
            await self._stop(lesson_id, package=False, state="interrupted")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- lesson events -------------------------------------------------------------------
    def _on_event(self, lesson_id: str, message: dict[str, Any]) -> None:
        if self._closing:
            return
        kind = message.get("type")
        if kind == "lesson":
            state = message.get("lesson_state")
            if state == "live":
                self._spawn(self._ensure(lesson_id))
            elif state == "ended":
                self._spawn(self._stop(lesson_id, package=self.config.package))
        elif kind == "media":
            if message.get("publisher"):
                self._spawn(self._ensure(lesson_id))
        elif kind in CHAPTER_TYPES:
            active = self.active.get(lesson_id)
            if active is not None:
                event = {k: v for k, v in message.items() if k in (
                    "type", "round", "peer_id", "name", "school", "on_stage")}
                event["t"] = active.now_ms()
                self._spawn(asyncio.to_thread(append_event, active.directory, event))

    def _lock(self, lesson_id: str) -> asyncio.Lock:
        lock = self._locks.get(lesson_id)
        if lock is None:
            lock = self._locks[lesson_id] = asyncio.Lock()
        return lock

    async def _ensure(self, lesson_id: str) -> None:
        """Record the lesson if it is live and its media is here; re-attach after a reconnect."""
        node = self.node
        assert node is not None and self.catalog is not None
        async with self._lock(lesson_id):
            if self._closing or not node.relay_has_publisher(lesson_id):
                return
            active = self.active.get(lesson_id)
            if active is not None:
                self._attach(active)
                return
            if not self.config.enabled:
                return
            lesson = await node.hub.store.get_lesson(lesson_id)
            if lesson is None or lesson.state != "live":
                return
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
                "errors": 0, "consents": [c for c in self.catalog.consents()
                                          if c.get("school") in schools],
            }
            directory = self.catalog.dir_of(rid)
            await asyncio.to_thread(self.catalog.create, record)
            recorder = Recorder(directory, config=self.config.recorder)
            active = ActiveRecording(record, recorder, directory)
            self.active[lesson_id] = active
            self._attach(active)
            if self.config.package and self.config.incremental:
                active.worker = self._spawn(self._chunk_worker(active))
            logger.info("recording started", extra={"lesson": lesson_id, "recording": rid})
        await self._announce(lesson_id)

    def _attach(self, active: ActiveRecording) -> None:
        assert self.node is not None
        try:
            self.node.relay.attach_sink(active.lesson, active.recorder.video)
            self.node.relay.attach_sink(active.lesson, active.recorder.audio)
        except Exception:
            logger.exception("recorder could not attach", extra={"lesson": active.lesson})

    async def _stop(self, lesson_id: str, *, package: bool, state: str = "packaging") -> None:
        assert self.node is not None and self.catalog is not None
        async with self._lock(lesson_id):
            active = self.active.pop(lesson_id, None)
            if active is None:
                return
            active.stopping = True
            if active.worker is not None:
                # a chunk job still running is stopped (a nice-19 job may be starved on a
                # busy node; the final packaging, less niced, redoes at most that chunk)
                active.worker.cancel()
            try:
                self.node.relay.detach_sink(lesson_id, active.recorder.video)
                self.node.relay.detach_sink(lesson_id, active.recorder.audio)
            except Exception:
                logger.exception("recorder detach failed", extra={"lesson": lesson_id})
            segments = await active.recorder.stop()
            stats = active.recorder.stats()
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
            await asyncio.to_thread(self.catalog.update, active.id, **fields)
            logger.info("recording stopped", extra={"lesson": lesson_id,
                                                     "recording": active.id, **stats})
        if not self._closing:
            await self._announce(lesson_id)
        if package and segments:
            self._spawn(self.package(active.id))

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
        while not active.stopping and not self._closing:
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
        assert self.catalog is not None
        async with self._package_lock:
            self.packaging.add(recording_id)
            started = time.monotonic()
            try:
                directory = self.catalog.dir_of(recording_id)
                await asyncio.to_thread(self.catalog.update, recording_id, state="packaging")
                code, summary = await self._run_packager(
                    directory, self._packager_args(), self.config.packager_nice)
                seconds = time.monotonic() - started
                if code != 0 or "error" in summary:
                    metrics.ERRORS.labels(reason="packaging").inc()
                    logger.warning("packaging failed", extra={
                        "recording": recording_id, "error": summary.get("error")})
                    await asyncio.to_thread(self.catalog.update, recording_id, state="failed",
                                            error=str(summary.get("error"))[:500])
                    return None
                metrics.PACKAGING_SECONDS.observe(seconds)
                record = self.catalog.get(recording_id) or {}
                size = await asyncio.to_thread(_dir_size, directory)
                ended = record.get("ended_at")
                await asyncio.to_thread(
                    self.catalog.update, recording_id, state="ready",
                    duration=summary["duration"], chapters=summary["chapters"],
                    renditions=[{k: r[k] for k in ("name", "kind", "width", "height",
                                                   "average_bps", "peak_bps") if k in r}
                                for r in summary["renditions"]],
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
                if not self._closing:
                    self._spawn(self.enforce_retention())

    # ---- recovery, retention -------------------------------------------------------------
    async def _recover(self) -> None:
        assert self.catalog is not None
        for record in self.catalog.list():
            if record.get("state") not in _UNFINISHED:
                continue
            rid = record["id"]
            directory = self.catalog.dir_of(rid)
            segments = await asyncio.to_thread(recover_segments, directory)
            metrics.RECOVERED.inc()
            if not segments:
                await asyncio.to_thread(self.catalog.update, rid, state="failed",
                                        error="nothing was recorded")
                continue
            duration = (segments[-1].end_ms - segments[0].start_ms) / 1000
            await asyncio.to_thread(
                self.catalog.update, rid, state="packaging", segments=len(segments),
                duration=round(duration, 3), recovered=True,
                ended_at=record.get("ended_at") or (record.get("started_at") or 0) + duration,
                size=sum(s.bytes for s in segments))
            logger.info("recording recovered", extra={"recording": rid,
                                                       "segments": len(segments)})
            if self.config.package:
                self._spawn(self.package(rid))

    def busy(self) -> set[str]:
        now = time.monotonic()
        played = {rid for rid, at in self.played.items() if now - at < self.config.play_window}
        return {a.id for a in self.active.values()} | set(self.packaging) | played

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

    # ---- state for pages -----------------------------------------------------------------
    def state(self, lesson_id: str) -> dict[str, Any]:
        active = self.active.get(lesson_id)
        if active is None:
            return {"type": "recording", "state": "off", "recording_id": None}
        return {"type": "recording",
                "state": "paused" if active.recorder.paused else "recording",
                "recording_id": active.id,
                "consent_schools": sorted(c["school"] for c in self.catalog.consents())
                if self.catalog else []}

    async def _announce(self, lesson_id: str) -> None:
        assert self.node is not None
        await self.node.hub.broadcast(lesson_id, self.state(lesson_id))

    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        assert claims is not None and self.catalog is not None
        lesson_id = session.lesson_id
        if claims.school and claims.role in (Role.TEACHER, Role.CLASSROOM):
            self._schools.setdefault(lesson_id, set()).add(claims.school)
            active = self.active.get(lesson_id)
            if active is not None and claims.school not in active.record["schools"]:
                active.record["schools"] = sorted({*active.record["schools"], claims.school})
                self._spawn(asyncio.to_thread(self.catalog.update, active.id,
                                              schools=active.record["schools"]))
        state = self.state(lesson_id)
        state.pop("type")
        return {
            "recording": state,
            "recording_consent_required": bool(
                claims.role == Role.CLASSROOM and claims.school
                and self.catalog.consent(claims.school) is None),
        }

    async def handle(self, session: Session, message: Message) -> None:
        from signaling.errors import ClassroomError, ErrorCode

        assert self.catalog is not None and session.claims is not None
        lesson_id = session.lesson_id
        if message.type == "recording-consent":
            school = session.claims.school
            if not school:
                raise ClassroomError(ErrorCode.BAD_MESSAGE, "the token names no school")
            active = self.active.get(lesson_id)
            await asyncio.to_thread(
                self.catalog.add_consent, school,
                by=message.get("name") or session.claims.name or session.claims.sub,
                role=session.claims.role.value, lesson=lesson_id,
                recording=active.id if active else None)
            if active is not None:
                consent = self.catalog.consent(school)
                active.record.setdefault("consents", []).append(consent)
                await asyncio.to_thread(self.catalog.update, active.id,
                                        consents=active.record["consents"])
            await self._announce(lesson_id)
            return
        active = self.active.get(lesson_id)
        if active is None:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "the lesson is not being recorded")
        if message.type == "recording-pause":
            active.recorder.pause()
            await asyncio.to_thread(self.catalog.update, active.id, state="paused")
        else:
            if active.recorder.paused:
                active.recorder.resume()
                self._on_event(lesson_id, {"type": "recording-resumed"})
            await asyncio.to_thread(self.catalog.update, active.id, state="recording")
        await self._announce(lesson_id)

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        from .routes import add_routes

        add_routes(app, self)


def _dir_size(path: Path) -> int:
    from .catalog import dir_size

    return dir_size(path)


def _default_title(record: dict[str, Any]) -> str:
    who = record.get("teacher") or record.get("lesson") or ""
    return f"{who} {record.get('date', '')}".strip()
