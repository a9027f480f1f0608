"""Lesson state and fan-out of lesson events to this node's sockets.

Every state change goes through the store: it is saved, then announced on the lesson's
event channel. Every node (this one included) hears the announcement and tells its own
sockets. So two nodes on one Redis show the same lesson, and a node never trusts what
only it has seen.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from . import metrics
from .errors import ClassroomError, ErrorCode
from .store import LessonRecord, PresenceRecord, Store, StoreUnavailable

logger = logging.getLogger(__name__)


class LocalPeer(Protocol):
    """What the hub needs of a connected socket (``handlers.Session``)."""

    peer_id: str
    lesson_id: str
    presence: PresenceRecord

    async def send(self, message: dict[str, Any]) -> None: ...


def in_roster(peer: LocalPeer) -> bool:
    """Students (a phone each, possibly thousands) hear lesson events but are neither in
    the roster nor sent it: a roster of every phone to every phone grows as N^2."""
    return peer.presence.role != "student"


class LessonHub:
    def __init__(
        self,
        store: Store,
        *,
        roster_poll: float = 5.0,
        on_lesson_ended: Callable[[str], Awaitable[None]] | None = None,
        media_live: Callable[[str], bool] | None = None,
        on_state: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.roster_poll = roster_poll
        self._on_lesson_ended = on_lesson_ended
        self._media_live = media_live or (lambda lesson_id: False)
        """True while the relay receives the lesson's teacher media (rebuilding a record)."""
        self._on_state = on_state
        """``on_state(lesson_id, state)`` whenever this node learns a lesson's state (hello,
        start/end, an announcement, a resync): the relay's on-air gate follows it."""
        self._known: dict[str, LessonRecord] = {}  # the newest record seen, per local lesson
        self._peers: dict[str, dict[str, LocalPeer]] = {}  # lesson -> peer_id -> peer
        self._last_roster: dict[str, list[dict[str, Any]]] = {}
        self._live: set[str] = set()
        self._roster_dirty: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_roster = asyncio.Event()
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        metrics.LESSONS_ACTIVE.set_function(lambda: len(self._live))

    async def start(self) -> None:
        await self.store.start(self._on_event)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._refresh_presence_loop()),
            loop.create_task(self._roster_loop()),
        ]
        try:
            for lesson in await self.store.list_lessons():
                if lesson.state == "live":
                    self._live.add(lesson.id)
        except StoreUnavailable:
            logger.warning("store unavailable at start; lesson gauge starts empty")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=3)
            for task in stuck:
                logger.warning("hub task ignored cancellation", extra={"task": task.get_name()})
        self._tasks = []
        await self.store.close()

    # lessons --------------------------------------------------------------------------
    async def ensure_lesson(self, lesson_id: str, **fields: Any) -> LessonRecord:
        """The lesson, created in ``waiting`` if a valid token names one not yet known
        (or, when this node knew it and the store lost it, as this node knew it)."""
        lesson = await self.store.get_lesson(lesson_id)
        if lesson is None:
            await self.store.create_lesson(self._rebuilt(lesson_id, fields))
            lesson = await self.store.get_lesson(lesson_id)
        assert lesson is not None
        self._remember(lesson)
        return lesson

    async def get_lesson(self, lesson_id: str) -> LessonRecord:
        lesson = await self.store.get_lesson(lesson_id)
        if lesson is None:
            raise ClassroomError(ErrorCode.LESSON_NOT_FOUND, f"no lesson {lesson_id!r}")
        self._remember(lesson)
        return lesson

    def known_lesson(self, lesson_id: str) -> LessonRecord | None:
        """The newest record of a lesson with sockets on this node, as this node saw it
        (stored or announced), without asking the store: media negotiation checks it, so
        a frozen store does not hold up an offer."""
        known = self._known.get(lesson_id)
        return copy.copy(known) if known is not None else None

    def _remember(self, lesson: LessonRecord) -> None:
        # Forgotten when the lesson's last local socket leaves (leave()).
        self._known[lesson.id] = copy.copy(lesson)
        if self._on_state is not None:
            try:
                self._on_state(lesson.id, lesson.state)
            except Exception:
                logger.exception("lesson state hook failed", extra={"lesson": lesson.id})

    def _rebuilt(self, lesson_id: str, fields: dict[str, Any] | None = None) -> LessonRecord:
        """A record for a lesson the store does not have: as this node last saw it, else
        from what it holds now (live while the relay has the teacher's media; teacher and
        school from the teacher's socket), else a new ``waiting`` one from ``fields``."""
        known = self._known.get(lesson_id)
        if known is not None:
            return copy.copy(known)
        peers = self._peers.get(lesson_id)
        if not peers:
            return LessonRecord(id=lesson_id, **(fields or {}))
        teacher = next((p.presence for p in peers.values() if p.presence.role == "teacher"),
                       None)
        live = self._media_live(lesson_id)
        return LessonRecord(
            id=lesson_id, state="live" if live else "waiting",
            started_at=time.time() if live else None,
            teacher=teacher.name if teacher else "", school=teacher.school if teacher else "")

    async def reconcile(self) -> list[str]:
        """Put back lesson records the store lost (Redis restarted empty: it keeps nothing
        on disk). For each lesson with sockets here: a missing record is rebuilt
        (:meth:`_rebuilt`); a record back in ``waiting`` while this node saw the lesson
        live or ended is one recreated by a hello after the loss (a lesson never returns
        to waiting) and is replaced. Returns the lessons restored. Each node restores
        its own lessons and (resync) its own sockets' presence."""
        restored = []
        for lesson_id in list(self._peers):
            stored = await self.store.get_lesson(lesson_id)
            known = self._known.get(lesson_id)
            if stored is None:
                if await self.store.create_lesson(self._rebuilt(lesson_id)):
                    restored.append(lesson_id)
                stored = await self.store.get_lesson(lesson_id)
            elif stored.state == "waiting" and known is not None and known.state != "waiting":
                await self.store.save_lesson(known)
                stored = known
                restored.append(lesson_id)
            if stored is not None:
                self._remember(stored)
        if restored:
            logger.warning("lesson records lost by the store rebuilt",
                           extra={"lessons": restored})
        return restored

    async def set_state(self, lesson_id: str, state: str) -> LessonRecord:
        # ensure_lesson, not get_lesson: a Redis that lost its data (restart without
        # persistence) must not strand a teacher whose token names this lesson.
        lesson = await self.ensure_lesson(lesson_id)
        if lesson.state == state:
            return lesson
        now = time.time()
        if state == "live":
            lesson.started_at = now
            lesson.ended_at = None
        elif state == "ended":
            if lesson.state == "waiting":
                raise ClassroomError(ErrorCode.LESSON_NOT_LIVE, "the lesson has not started")
            lesson.ended_at = now
        lesson.state = state
        await self.store.save_lesson(lesson)
        self._remember(lesson)
        await self.store.publish(
            lesson_id, {"type": "lesson", "lesson_state": state, "lesson_info": lesson.to_json()}
        )
        logger.info("lesson state", extra={"lesson": lesson_id, "state": state})
        return lesson

    # presence -------------------------------------------------------------------------
    async def join(self, peer: LocalPeer) -> None:
        if not in_roster(peer):
            self._peers.setdefault(peer.lesson_id, {})[peer.peer_id] = peer
            return
        await self.store.put_presence(peer.presence)
        self._peers.setdefault(peer.lesson_id, {})[peer.peer_id] = peer
        await self.roster_changed(peer.lesson_id)

    async def leave(self, peer: LocalPeer) -> None:
        peers = self._peers.get(peer.lesson_id)
        if peers is not None:
            peers.pop(peer.peer_id, None)
            if not peers:
                del self._peers[peer.lesson_id]
                self._last_roster.pop(peer.lesson_id, None)
                self._known.pop(peer.lesson_id, None)
        if not in_roster(peer):
            return
        try:
            await self.store.remove_presence(peer.lesson_id, peer.peer_id)
            await self.roster_changed(peer.lesson_id)
        except StoreUnavailable:
            logger.warning("store unavailable; %s expires by TTL", peer.peer_id)

    async def update_presence(self, peer: LocalPeer) -> None:
        if await self._put_if_here(peer):
            await self.roster_changed(peer.lesson_id)

    def _here(self, peer: LocalPeer) -> bool:
        return self._peers.get(peer.lesson_id, {}).get(peer.peer_id) is peer

    async def _put_if_here(self, peer: LocalPeer) -> bool:
        """Put a peer's presence unless it left; if it left while the put was on its way
        (leave() removed it meanwhile), remove it again: a put landing after the remove
        would keep a closed socket in the roster until the TTL."""
        if not self._here(peer):
            return False
        await self.store.put_presence(peer.presence)
        if not self._here(peer):
            await self.store.remove_presence(peer.lesson_id, peer.peer_id)
            return False
        return True

    async def roster_changed(self, lesson_id: str) -> None:
        await self.store.publish(lesson_id, {"type": "roster-changed"})

    async def roster(self, lesson_id: str) -> list[dict[str, Any]]:
        return [r.public() for r in await self.store.roster(lesson_id)]

    def local_peers(self, lesson_id: str) -> list[LocalPeer]:
        return list(self._peers.get(lesson_id, {}).values())

    # events ---------------------------------------------------------------------------
    async def _on_event(self, lesson_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "resync":
            await self._resync()
            return
        if kind == "roster-changed":
            # Coalesce bursts: the roster loop sends one fresh roster per lesson.
            self._roster_dirty.add(lesson_id)
            self._wake_roster.set()
            return
        if kind == "lesson":
            state = event.get("lesson_state")
            info = event.get("lesson_info")
            if isinstance(info, dict) and info.get("id") == lesson_id:
                self._remember(LessonRecord.from_json(info))
            if state == "live":
                self._live.add(lesson_id)
            else:
                self._live.discard(lesson_id)
            if state == "ended" and self._on_lesson_ended is not None:
                await self._on_lesson_ended(lesson_id)
        await self.broadcast(lesson_id, event)

    async def _resync(self) -> None:
        """After an outage: put back what the store lost (lesson records, this node's
        sockets' presence), then resend every local lesson's state and roster from it."""
        await self.reconcile()
        await self._put_local_presence()
        for lesson_id in list(self._peers):
            lesson = await self.store.get_lesson(lesson_id)
            if lesson is None:
                continue
            self._remember(lesson)
            if lesson.state == "live":
                self._live.add(lesson_id)
            else:
                self._live.discard(lesson_id)
            await self.broadcast(lesson_id, {"type": "lesson", "lesson_state": lesson.state,
                                             "lesson_info": lesson.to_json()})
            self._roster_dirty.add(lesson_id)
        self._wake_roster.set()

    def add_listener(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Let a feature observe every lesson event this node delivers to its sockets
        (``listener(lesson_id, message)``, called in the event loop; must not block).
        Events with a ``to`` field reach only listeners: a feature addresses one peer's
        node that way (mute its uplink, close its socket) without telling every socket."""
        self._listeners.append(listener)

    async def broadcast(self, lesson_id: str, message: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(lesson_id, message)
            except Exception:
                logger.exception("lesson event listener failed", extra={"lesson": lesson_id})
        if message.get("to") is not None:
            return  # addressed to one peer: the listener that owns its type delivers it
        peers = self.local_peers(lesson_id)
        if peers:
            await asyncio.gather(*(p.send(message) for p in peers), return_exceptions=True)

    async def _send_roster(self, lesson_id: str, force: bool = False) -> None:
        if lesson_id not in self._peers:
            return
        roster = await self.roster(lesson_id)
        if force or roster != self._last_roster.get(lesson_id):
            self._last_roster[lesson_id] = roster
            peers = [p for p in self.local_peers(lesson_id) if in_roster(p)]
            message = {"type": "roster", "peers": roster}
            await asyncio.gather(*(p.send(message) for p in peers), return_exceptions=True)

    async def _roster_loop(self) -> None:
        """Send rosters that changed; a periodic pass catches peers expired by TTL."""
        next_poll = time.monotonic() + self.roster_poll
        while True:
            timeout = max(0.0, next_poll - time.monotonic())
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that races with the event, and this loop would outlive close().
            try:
                async with asyncio.timeout(timeout):
                    await self._wake_roster.wait()
            except TimeoutError:
                pass
            self._wake_roster.clear()
            if time.monotonic() >= next_poll:
                lessons = set(self._peers)
                next_poll = time.monotonic() + self.roster_poll
            else:
                lessons = set()
            lessons |= self._roster_dirty
            self._roster_dirty.clear()
            for lesson_id in lessons:
                try:
                    await self._send_roster(lesson_id)
                except StoreUnavailable:
                    break
                except Exception:
                    logger.exception("roster update failed", extra={"lesson": lesson_id})

    async def _put_local_presence(self) -> None:
        """Refresh (or put back) the presence of every roster socket on this node."""
        for peers in list(self._peers.values()):
            for peer in list(peers.values()):
                if in_roster(peer):
                    await self._put_if_here(peer)

    async def _refresh_presence_loop(self) -> None:
        """Keep this node's peers alive in the store; a dead node's peers expire."""
        interval = max(0.5, self.store.presence_ttl / 3)
        was_up = True
        while True:
            await asyncio.sleep(interval)
            up = await self.store.ping()
            metrics.STORE_UP.set(1 if up else 0)
            if not up:
                if was_up:
                    logger.warning("store unreachable; presence refresh paused")
                was_up = False
                continue
            try:
                await self._put_local_presence()
                # A periodic check too: a store can lose data without a reconnect.
                if await self.reconcile():
                    await self._resync()  # tell the sockets the restored state
            except StoreUnavailable:
                pass
            if not was_up:
                logger.info("store reachable again; rosters resent")
                for lesson_id in list(self._peers):
                    self._roster_dirty.add(lesson_id)
                self._wake_roster.set()
            was_up = True
