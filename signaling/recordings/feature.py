"""Recording as a signaling feature: every live lesson lands in the library by itself.

* A lesson that is ``live`` and whose teacher's media flows into this node is recorded
  (:meth:`RecordingLibrary.ensure <recording.library.RecordingLibrary.ensure>`: the
  recorder's two sinks attached to the relay, ``Relay.attach_sink``). A teacher who
  reconnects gets the recorder attached to the new source (``media`` event); ``lesson``
  ``ended`` stops it and packages the recording.
* The teacher may pause and resume (``recording-pause`` / ``recording-resume``); every
  socket of the lesson hears ``recording {state, recording_id, consent_schools}``, and a
  classroom's ``welcome`` carries ``recording`` and ``recording_consent_required``: before
  the first recording of a school its local teacher acknowledges a notice (告知-同意,
  ``recording-consent``), kept in the catalog with who and when.
* Quiz rounds, the stage and resumes become chapters (lesson events of
  ``recording.chapters.CHAPTER_TYPES``).
* Recording stays with the origin: only the node the teacher publishes to records (an
  edge's pulled media is not recorded). When the origin moves (Redis names another live
  node and this node has no teacher's media for ``HANDOFF_GRACE`` s), the part written or
  waiting here is finished (:meth:`RecordingLibrary.hand_off`); the new origin continues
  the recording itself when it shares this folder and nobody writes it any more, else
  records a part of the same ``group`` (one entry in the listing).

Packaging, recovery and retention are the library's (recording/library.py); HTTP is
``routes.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recording.chapters import CHAPTER_TYPES
from recording.library import LessonInfo, NotRecording, RecordingConfig, RecordingLibrary
from signaling.auth import Role
from signaling.errors import ClassroomError, ErrorCode
from signaling.features import Feature
from signaling.messages import recording as recording_messages

from .remote import RemoteLibrary

if TYPE_CHECKING:
    from media_relay import Relay
    from media_relay.tracks import KindSink
    from recording.catalog import Catalog
    from signaling.app import Node
    from signaling.config import Config
    from signaling.handlers import Session
    from signaling.protocol import Message

logger = logging.getLogger(__name__)

HANDOFF_CHECK = 1.0
"""Seconds between looks at the origin of the lessons recorded here without their media."""
HANDOFF_GRACE = 2.0
"""How long another live node must hold the origin before this node's part is finished
(a teacher who reconnects to this node within it keeps one recording going here)."""


class RecordingMedia:
    """The relay as the library's :class:`~recording.library.SinkHost`: the teacher's
    camera and voice through ``Relay.attach_sink``, the share and the stage lines (a sink's
    ``line``) on the lesson's feeds (``LessonMedia.attach_track_sink``)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def attach_sink(self, lesson_id: str, sink: KindSink) -> None:
        line = getattr(sink, "line", sink.kind)
        if line in ("video", "audio"):
            self.relay.attach_sink(lesson_id, sink)
        else:
            self.relay.registry.lesson(lesson_id).media.attach_track_sink(sink, line)

    def detach_sink(self, lesson_id: str, sink: KindSink) -> None:
        line = getattr(sink, "line", sink.kind)
        if line in ("video", "audio"):
            self.relay.detach_sink(lesson_id, sink)
            return
        lesson = self.relay.registry.lessons.get(lesson_id)
        if lesson is not None:
            lesson.media.detach_track_sink(sink, line)


class RecordingFeature(Feature):
    name = "recording"
    messages = recording_messages.MESSAGES  # signaling/messages/recording.py

    def __init__(self, config: RecordingConfig | None = None) -> None:
        self.library = RecordingLibrary(config)
        self.node: Node | None = None
        self.remote = RemoteLibrary(self)
        """The other nodes' libraries (listing and playback across nodes, remote.py)."""
        self._moved: dict[str, float] = {}  # lesson -> since when its origin is elsewhere
        self._watch: asyncio.Task[None] | None = None

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
            owner=config.node_id,  # processes sharing the library recover only their own
        ))

    @property
    def config(self) -> RecordingConfig:
        return self.library.config

    @property
    def catalog(self) -> Catalog:
        """The library's catalog (once the node started)."""
        assert self.library.catalog is not None, "feature not started"
        return self.library.catalog

    @property
    def _node(self) -> Node:
        assert self.node is not None, "feature not started"
        return self.node

    # ---- lifetime ------------------------------------------------------------------------
    async def start(self, node: Node) -> None:
        self.node = node
        async def lesson_live(lesson_id: str) -> bool:
            lesson = await node.hub.store.get_lesson(lesson_id)
            return lesson is not None and lesson.state == "live"

        await self.library.open(node.config.library, RecordingMedia(node.relay),
                                self._announce, lesson_live)
        node.hub.add_listener(self._on_event)
        if node.config.redis_url:
            self._watch = self.library.spawn(self._watch_origins())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.remote.close()
        await self.library.close()

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        from .routes import add_routes

        add_routes(app, self)

    # ---- lesson events -------------------------------------------------------------------
    def _on_event(self, lesson_id: str, message: dict[str, Any]) -> None:
        library = self.library
        if library.closing:
            return
        kind = message.get("type")
        if kind == "lesson":
            state = message.get("lesson_state")
            if state == "live":
                library.spawn(self._ensure(lesson_id))
            elif state == "ended":
                library.spawn(library.stop(lesson_id, package=library.config.package))
        elif kind == "media":
            if message.get("publisher"):
                library.spawn(self._ensure(lesson_id))
        elif kind in CHAPTER_TYPES:
            library.chapter_event(lesson_id, message)

    async def _ensure(self, lesson_id: str) -> None:
        """Record the lesson if it is live and its media is here; re-attach after a reconnect."""
        node = self._node

        async def live_lesson() -> LessonInfo | None:
            lesson = await node.hub.store.get_lesson(lesson_id)
            if lesson is None or lesson.state != "live":
                return None
            return LessonInfo(lesson.id, lesson.title or "", lesson.teacher, lesson.school,
                              lesson.started_at)

        await self.library.ensure(lesson_id,
                                  media_here=lambda: lesson_id in node.published_lessons(),
                                  live_lesson=live_lesson)

    async def _watch_origins(self) -> None:
        """Finish this node's part of a lesson whose origin moved to another live node."""
        while True:
            await asyncio.sleep(HANDOFF_CHECK)
            try:
                await self._check_origins()
            except Exception as exc:  # noqa: BLE001 - Redis gone: look again next time
                logger.debug("origin check failed", extra={"error": repr(exc)})

    async def _check_origins(self) -> None:
        node, library = self._node, self.library
        board = self.remote._board()
        lessons = (set(library.active) | set(library.resumable)) - node.published_lessons()
        for lesson_id in set(self._moved) - lessons:
            del self._moved[lesson_id]
        if board is None or not lessons:
            return
        me = node.config.node_id
        live = None
        for lesson_id in sorted(lessons):
            origin = await board.origin(lesson_id)
            if origin and origin != me:
                live = live if live is not None else {n.get("id") for n in await board.nodes()}
            if not origin or origin == me or origin not in live:
                self._moved.pop(lesson_id, None)
                continue
            since = self._moved.setdefault(lesson_id, time.monotonic())
            if time.monotonic() - since >= HANDOFF_GRACE:
                del self._moved[lesson_id]
                logger.info("origin moved: this node's recording part ends",
                            extra={"lesson": lesson_id, "origin": origin})
                await library.hand_off(lesson_id)

    # ---- state for pages -----------------------------------------------------------------
    def state(self, lesson_id: str) -> dict[str, Any]:
        """The ``recording`` message of a lesson."""
        return {"type": "recording", **self.library.state(lesson_id)}

    async def _announce(self, lesson_id: str) -> None:
        await self._node.hub.broadcast(lesson_id, self.state(lesson_id))

    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        assert claims is not None
        lesson_id = session.lesson_id
        if claims.school and claims.role in (Role.TEACHER, Role.CLASSROOM):
            self.library.note_school(lesson_id, claims.school)
        return {
            "recording": self.library.state(lesson_id),
            "recording_consent_required": bool(
                claims.role == Role.CLASSROOM and claims.school
                and self.library.consent_required(claims.school)),
        }

    async def handle(self, session: Session, message: Message) -> None:
        claims = session.claims
        assert claims is not None
        lesson_id = session.lesson_id
        try:
            if message.type == "recording-consent":
                if not claims.school:
                    raise ClassroomError(ErrorCode.BAD_MESSAGE, "the token names no school")
                await self.library.add_consent(
                    claims.school, by=message.get("name") or claims.name or claims.sub,
                    role=claims.role.value, lesson_id=lesson_id)
            elif message.type == "recording-pause":
                await self.library.pause(lesson_id)
            else:
                await self.library.resume(lesson_id)
        except NotRecording:
            raise ClassroomError(ErrorCode.BAD_MESSAGE,
                                 "the lesson is not being recorded") from None
