"""Usage collection (应用统计's raw figures): a Feature that keeps, per lesson, what happened.

From lesson events and sessions of this node: when the lesson went live and ended (the
lesson record's ``started_at``/``ended_at``), each classroom's connections (joins,
seconds connected), the seconds it spent on each tier (``high``/``mid``/``low``/
``audio`` = audio-only; sampled from the session's presence every flush, so a tier change
is placed within one flush interval) and, once the lesson ended, its practice/test rounds
and the answers per classroom (students' answers counted per school only: no names).

Each node writes its own document (kind ``usage``, id derived from lesson + node, field
``lesson_id``) every :data:`FLUSH_INTERVAL` seconds while something changed; the stats
merge them. Classroom identity is the classroom token's ``sub`` (a device token's is its
classroom id). Nothing here blocks the loop: the database runs in its own thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..auth import Role
from ..errors import ClassroomError
from ..features import Feature

if TYPE_CHECKING:
    from ..app import Node
    from ..auth import Claims
    from ..handlers import Session

logger = logging.getLogger(__name__)
FLUSH_INTERVAL = 10.0
INITIAL_TIER = "high"  # a classroom the relay has not moved yet is on the top tier


def usage_id(lesson_id: str, node_id: str) -> str:
    return "u" + hashlib.sha1(f"{lesson_id}|{node_id}".encode()).hexdigest()[:24]


@dataclass
class _Open:
    lesson: str
    sub: str
    school: str
    since: float  # time.time() of the last accounting
    tier: str


@dataclass
class LessonUsage:
    lesson_id: str
    node: str
    started_at: float | None = None
    ended_at: float | None = None
    classrooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    quiz_read_at: float | None = None
    merge_stored: bool = False  # written before, then forgotten here: add to what is stored

    def merge(self, doc: dict[str, Any]) -> None:
        """Add a stored document of this lesson and node (written before it was forgotten)."""
        old = LessonUsage.from_json(doc)
        if old.started_at is not None:
            self.started_at = min(filter(None, (self.started_at, old.started_at)))
        if old.ended_at is not None and (self.ended_at or 0) < old.ended_at:
            self.ended_at = old.ended_at
        for sub, r in old.classrooms.items():
            mine = self.room(sub, r.get("school", ""))
            mine["joins"] += r.get("joins", 0)
            mine["seconds"] += r.get("seconds", 0.0)
            for tier, sec in (r.get("tiers") or {}).items():
                mine["tiers"][tier] = mine["tiers"].get(tier, 0.0) + sec
        if self.quiz_read_at is None and old.quiz_read_at is not None:
            self.rounds, self.answers, self.quiz_read_at = old.rounds, old.answers, \
                old.quiz_read_at

    def room(self, sub: str, school: str) -> dict[str, Any]:
        r = self.classrooms.get(sub)
        if r is None:
            r = self.classrooms[sub] = {"school": school, "joins": 0, "seconds": 0.0,
                                        "tiers": {}}
        return r

    def to_json(self) -> dict[str, Any]:
        return {"lesson_id": self.lesson_id, "node": self.node, "started_at": self.started_at,
                "ended_at": self.ended_at, "classrooms": self.classrooms,
                "rounds": self.rounds, "answers": self.answers,
                "quiz_read_at": self.quiz_read_at, "updated_at": time.time()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LessonUsage:
        return cls(doc["lesson_id"], doc.get("node", ""), doc.get("started_at"),
                   doc.get("ended_at"), doc.get("classrooms") or {}, doc.get("rounds") or {},
                   doc.get("answers") or {}, doc.get("quiz_read_at"))


def count_answers(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Answers per classroom (``sub``) and students' answers per school: aggregates only."""
    rooms: dict[str, int] = {}
    students: dict[str, int] = {}
    for a in answers:
        if a.get("kind") == "classroom":
            rooms[a["sub"]] = rooms.get(a["sub"], 0) + 1
        else:
            school = a.get("school") or ""
            students[school] = students.get(school, 0) + 1
    return {"classrooms": rooms, "students": students}


class UsageFeature(Feature):
    name = "usage"

    def __init__(self, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.flush_interval = flush_interval
        self.node: Node | None = None
        self.lessons: dict[str, LessonUsage] = {}
        self._open: dict[str, _Open] = {}  # session peer id -> its open connection
        self._dirty: set[str] = set()
        self._forgotten: set[str] = set()  # lessons written and dropped from memory
        self._task: asyncio.Task[None] | None = None

    async def start(self, node: Node) -> None:
        self.node = node
        node.hub.add_listener(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="usage-flush")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        now = time.time()
        for peer in list(self._open):
            self._close_peer(peer, now)
        try:
            await self.flush()
        except Exception:
            logger.exception("usage flush at close failed")

    # events ------------------------------------------------------------------------------
    def _lesson(self, lesson_id: str) -> LessonUsage:
        u = self.lessons.get(lesson_id)
        if u is None:
            assert self.node is not None
            u = self.lessons[lesson_id] = LessonUsage(lesson_id, self.node.config.node_id,
                                                      merge_stored=lesson_id in self._forgotten)
        return u

    def _on_event(self, lesson_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "lesson":
            info = event.get("lesson_info") or {}
            u = self._lesson(lesson_id)
            started, ended = info.get("started_at"), info.get("ended_at")
            if isinstance(started, int | float) and u.started_at is None:
                u.started_at = float(started)
            if isinstance(ended, int | float):
                u.ended_at = float(ended)
            self._dirty.add(lesson_id)
            if event.get("lesson_state") == "ended" and self.node is not None:
                self.node.spawn(self._read_quiz(lesson_id))
        elif kind in ("quiz-question", "quiz-test"):
            u = self._lesson(lesson_id)
            mode = "practice" if kind == "quiz-question" else "test"
            u.rounds[mode] = u.rounds.get(mode, 0) + 1
            self._dirty.add(lesson_id)

    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        if claims is not None and claims.role == Role.CLASSROOM:
            now = time.time()
            u = self._lesson(session.lesson_id)
            u.room(claims.sub, claims.school)["joins"] += 1
            self._open[session.peer_id] = _Open(session.lesson_id, claims.sub, claims.school,
                                                now, session.presence.tier or INITIAL_TIER)
            self._dirty.add(session.lesson_id)
        return {}

    async def session_closed(self, session: Session, claims: Claims) -> None:
        self._close_peer(session.peer_id, time.time())

    def _account(self, peer: _Open, now: float) -> None:
        spent = max(0.0, now - peer.since)
        room = self._lesson(peer.lesson).room(peer.sub, peer.school)
        room["seconds"] += spent
        room["tiers"][peer.tier] = room["tiers"].get(peer.tier, 0.0) + spent
        peer.since = now
        self._dirty.add(peer.lesson)

    def _close_peer(self, peer_id: str, now: float) -> None:
        peer = self._open.pop(peer_id, None)
        if peer is not None:
            self._account(peer, now)

    def sample(self, now: float | None = None) -> None:
        """Account each open classroom's time since the last sample to its tier then."""
        now = time.time() if now is None else now
        assert self.node is not None
        tiers = {s.peer_id: s.presence.tier for s in self.node.sessions
                 if s.peer_id in self._open}
        for peer_id, peer in self._open.items():
            self._account(peer, now)
            peer.tier = tiers.get(peer_id) or peer.tier

    async def _read_quiz(self, lesson_id: str) -> None:
        """After the end: rounds and answers from the quiz store (the same on every node)."""
        from ..quiz.feature import QuizFeature

        assert self.node is not None
        quiz = next((f for f in self.node.features if isinstance(f, QuizFeature)), None)
        store = quiz._store if quiz is not None else None  # the quiz feature's own store
        if store is None:
            return
        try:
            rounds = await store.rounds(lesson_id)
            answers: list[dict[str, Any]] = []
            for rnd in rounds:
                answers.extend(await store.answers(lesson_id, rnd["round_id"]))
        except Exception:
            logger.exception("usage: quiz figures unreadable", extra={"lesson": lesson_id})
            return
        u = self._lesson(lesson_id)
        u.rounds = {}
        for rnd in rounds:
            u.rounds[rnd["mode"]] = u.rounds.get(rnd["mode"], 0) + 1
        u.answers = count_answers(answers)
        u.quiz_read_at = time.time()
        self._dirty.add(lesson_id)
        await self.flush()

    # persistence -------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write the lessons that changed (one apply); kept dirty if the database is down."""
        assert self.node is not None
        db = getattr(self.node, "school_db", None)
        if db is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for lid in dirty:
            u = self.lessons.get(lid)
            if u is not None and u.merge_stored:
                try:
                    stored = await db.get("usage", usage_id(lid, self.node.config.node_id))
                except ClassroomError:
                    self._dirty |= dirty
                    return
                if stored is not None:
                    u.merge(stored)
                u.merge_stored = False
        puts = [("usage", usage_id(lid, self.node.config.node_id),
                 self.lessons[lid].to_json()) for lid in dirty if lid in self.lessons]
        try:
            await db.apply(puts, [])
        except ClassroomError:
            self._dirty |= dirty
            return
        open_lessons = {p.lesson for p in self._open.values()}
        for lid in dirty:  # an ended lesson nobody is in any more: forget it here
            u = self.lessons.get(lid)
            if u is not None and u.ended_at is not None and u.quiz_read_at is not None \
                    and lid not in open_lessons:
                del self.lessons[lid]
                self._forgotten.add(lid)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                if self._open:
                    self.sample()
                await self.flush()
            except Exception:
                logger.exception("usage flush failed")
