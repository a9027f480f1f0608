"""The two-way lesson's messages (docs/two-way.md): hands, stage, grid, mute, remove, share.

Classroom: ``raise-hand``, ``lower-hand``, ``uplink-state``, ``leave-stage`` (when on
stage). Teacher: ``grid-view``, ``call-on-stage``, ``leave-stage``, ``mute-classroom``,
``remove-classroom``, ``share``. Every change is written to the stage store first, then
announced as a lesson event through the lesson store, so every node and the recorder
(``stage`` chapters) hear it. What must happen where a peer's socket or media lives (mute
its uplink, close a removed classroom) travels as an event addressed ``to`` that peer,
which only this feature's listener on each node sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from signaling import metrics
from signaling.auth import Claims, Role
from signaling.errors import ClassroomError, ErrorCode
from signaling.features import Feature
from signaling.messages import stage as msgs
from signaling.messages.core import Done
from signaling.store import PresenceRecord, StoreUnavailable

from .media import GRID, UPLINK, RelayGlue, new_uplink_record, uplink_event
from .store import StageStore, open_stage_store

if TYPE_CHECKING:
    from signaling.app import Node
    from signaling.handlers import Session

logger = logging.getLogger(__name__)

MAX_GRID_VIEW = msgs.MAX_GRID_VIEW
REMOVED_CLOSE_CODE = 4001  # the page must not reconnect after this close


def stage_event(record: dict[str, Any] | None, reason: str, uplink: bool = False
                ) -> dict[str, Any]:
    """The ``stage`` lesson event (the recording's chapter when ``peer_id`` is set)."""
    if record is None:
        return {"type": "stage", "peer_id": None, "name": "", "school": "",
                "at": time.time(), "reason": reason}
    return {"type": "stage", "peer_id": record["peer_id"], "name": record["name"],
            "school": record["school"], "at": record["at"], "reason": reason,
            "uplink": uplink}


class StageFeature(Feature):
    name = "stage"
    messages = msgs.MESSAGES  # signaling/messages/stage.py

    def __init__(self) -> None:
        self.node: Node | None = None
        self.store: StageStore | None = None
        self.relay: RelayGlue | None = None
        self._tiles: dict[str, dict[str, Any]] = {}  # this node's classrooms' uplink tiles
        self._tile_locks: dict[str, asyncio.Lock] = {}

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, node: Node) -> None:
        self.node = node
        self.store = open_stage_store(node.config.redis_url)
        self.relay = RelayGlue(node)
        node.hub.add_listener(self._on_event)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        """No HTTP routes: everything travels on the lesson's sockets."""

    @property
    def _store(self) -> StageStore:
        assert self.store is not None, "feature not started"
        return self.store

    @property
    def _node(self) -> Node:
        assert self.node is not None, "feature not started"
        return self.node

    @property
    def _relay(self) -> RelayGlue:
        assert self.relay is not None, "feature not started"
        return self.relay

    async def _publish(self, lesson_id: str, event: dict[str, Any]) -> None:
        await self._node.hub.store.publish(lesson_id, event)

    # welcome -----------------------------------------------------------------------------
    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        assert claims is not None
        lesson = session.lesson_id
        try:
            if claims.role == Role.CLASSROOM:
                await self._resume_hand(session, claims)
                if await self._store.is_muted(lesson, claims.sub):
                    self._relay.set_muted(session.peer_id, True)  # before any uplink offer
                    await self._update_uplink(session, muted=True)  # the teacher's tile
                    await session.send({"type": "muted", "on": True})  # held until welcome
            roster = {p.peer_id: p for p in await self._node.hub.store.roster(lesson)}
            out: dict[str, Any] = {
                "stage": await self._current_stage(lesson, roster),
                "hands": await self._hands(lesson, roster),
                "share": await self._store.get_share(lesson),
            }
            if claims.role == Role.TEACHER:
                out["uplinks"] = [uplink_event(r) for r in await self._store.uplinks(lesson)
                                  if r["peer_id"] in roster]
            return out
        except StoreUnavailable:
            return {"stage": None, "hands": [], "share": False}

    async def _resume_hand(self, session: Session, claims: Claims) -> None:
        """A classroom that reconnects with its hand up keeps its place in the queue."""
        entry = next((h for h in await self._store.hands(session.lesson_id)
                      if h["sub"] == claims.sub), None)
        if entry is None:
            return
        await self._store.raise_hand(session.lesson_id, claims.sub, session.peer_id,
                                     entry["at"])
        await self._publish(session.lesson_id,
                            {"type": "hand", "peer_id": session.peer_id, "raised": True})

    async def _current_stage(self, lesson: str, roster: dict[str, PresenceRecord]
                             ) -> dict[str, Any] | None:
        """The stage, cleared if its classroom is gone (a node died without clearing)."""
        record = await self._store.get_stage(lesson)
        if record is None:
            return None
        if record["peer_id"] not in roster:
            if await self._store.clear_stage_if(lesson, record["peer_id"]):
                await self._publish(lesson, stage_event(None, "left"))
            return None
        return {k: record[k] for k in ("peer_id", "name", "school", "at")}

    async def _hands(self, lesson: str, roster: dict[str, PresenceRecord]
                     ) -> list[dict[str, Any]]:
        """The queue oldest first, with only the classrooms present now."""
        out = []
        for entry in await self._store.hands(lesson):
            peer = roster.get(entry["peer_id"])
            if peer is not None:
                out.append({"peer_id": peer.peer_id, "name": peer.name,
                            "school": peer.school, "at": entry["at"]})
        return out

    # messages ----------------------------------------------------------------------------
    async def handle(self, session: Session, message: msgs.ClientMessage) -> None:
        handler = getattr(self, "_on_" + message.type.replace("-", "_"))
        await handler(session, message)

    async def _on_raise_hand(self, session: Session, message: Any) -> None:
        claims = session.claims
        assert claims is not None
        fresh = await self._store.raise_hand(session.lesson_id, claims.sub, session.peer_id,
                                             time.time())
        if fresh:
            metrics.HANDS_RAISED.inc()
        await self._publish(session.lesson_id,
                            {"type": "hand", "peer_id": session.peer_id, "raised": True})

    async def _on_lower_hand(self, session: Session, message: Any) -> None:
        claims = session.claims
        assert claims is not None
        await self._store.lower_hand(session.lesson_id, claims.sub)
        await self._publish(session.lesson_id,
                            {"type": "hand", "peer_id": session.peer_id, "raised": False})

    async def _lower_hand_of(self, lesson: str, peer_id: str) -> None:
        entry = next((h for h in await self._store.hands(lesson) if h["peer_id"] == peer_id),
                     None)
        if entry is not None and await self._store.lower_hand(lesson, entry["sub"]):
            await self._publish(lesson, {"type": "hand", "peer_id": peer_id, "raised": False})

    async def _classroom(self, lesson: str, peer_id: str) -> PresenceRecord:
        """A classroom present in this lesson, or ``not_found`` (unknown, left, another
        lesson's, or not a classroom)."""
        for peer in await self._node.hub.store.roster(lesson):
            if peer.peer_id == peer_id and peer.role == Role.CLASSROOM.value:
                return peer
        raise ClassroomError(ErrorCode.NOT_FOUND, f"no classroom {peer_id!r} in this lesson")

    async def _on_call_on_stage(self, session: Session, message: Any) -> None:
        lesson = session.lesson_id
        if (await self._node.hub.get_lesson(lesson)).state == "ended":
            raise ClassroomError(ErrorCode.LESSON_ENDED, "the lesson has ended")
        target = await self._classroom(lesson, message.peer_id)
        current = await self._store.get_stage(lesson)
        if current is not None and current["peer_id"] == target.peer_id:
            await session.send(stage_event(current, "already"))
            return
        record = {"peer_id": target.peer_id, "name": target.name, "school": target.school,
                  "at": time.time()}
        await self._store.set_stage(lesson, record)
        uplink = await self._store.get_uplink(lesson, target.peer_id)
        has_uplink = uplink is not None and uplink["state"] not in ("none", "closed", "failed")
        metrics.STAGE_CALLS.labels(uplink="yes" if has_uplink else "no").inc()
        await self._publish(lesson, stage_event(record, "called", has_uplink))
        await self._lower_hand_of(lesson, target.peer_id)
        logger.info("called on stage", extra={"lesson": lesson, "peer": target.peer_id,
                                              "uplink": has_uplink})

    async def _on_leave_stage(self, session: Session, message: Any) -> None:
        lesson = session.lesson_id
        current = await self._store.get_stage(lesson)
        claims = session.claims
        assert claims is not None
        if claims.role == Role.CLASSROOM and (current is None
                                              or current["peer_id"] != session.peer_id):
            raise ClassroomError(ErrorCode.FORBIDDEN,
                                 "only the classroom on stage may leave the stage")
        if current is None:
            await session.send(stage_event(None, "empty"))
            return
        if await self._store.clear_stage_if(lesson, current["peer_id"]):
            reason = "teacher" if claims.role == Role.TEACHER else "left"
            await self._publish(lesson, stage_event(None, reason))

    async def _on_grid_view(self, session: Session, message: msgs.GridView) -> None:
        await self._relay.set_view(session, list(dict.fromkeys(message.peers)))

    async def _on_mute_classroom(self, session: Session, message: msgs.MuteClassroom) -> None:
        target = await self._classroom(session.lesson_id, message.peer_id)
        # The classroom's own node stores it, mutes the relay and tells the classroom.
        await self._publish(session.lesson_id, {"type": "muted", "to": target.peer_id,
                                                "on": message.on})
        await session.send(Done(ref=message.type, peer_id=target.peer_id))

    async def _on_remove_classroom(self, session: Session, message: msgs.RemoveClassroom
                                   ) -> None:
        lesson = session.lesson_id
        target = await self._classroom(lesson, message.peer_id)
        await self._lower_hand_of(lesson, target.peer_id)
        metrics.CLASSROOMS_REMOVED.inc()
        await self._publish(lesson, {"type": "removed", "to": target.peer_id})
        await session.send(Done(ref=message.type, peer_id=target.peer_id))
        logger.info("classroom removed", extra={"lesson": lesson, "peer": target.peer_id})

    async def _on_share(self, session: Session, message: msgs.Share) -> None:
        on = message.on
        await self._store.set_share(session.lesson_id, on)
        await self._publish(session.lesson_id, {"type": "share", "on": on})

    async def _on_uplink_state(self, session: Session, message: msgs.UplinkState) -> None:
        if not await self._update_uplink(session, audio=message.audio, video=message.video):
            await session.send(Done(ref=message.type))  # nothing changed: nothing broadcast

    # uplink tiles (written only by the node holding the classroom's socket) --------------
    async def _update_uplink(self, session: Session, **changes: Any) -> bool:
        """Change a classroom's tile (True: an ``uplink`` event went out). The node holding
        its socket is the only writer: the tile lives here, and a lock per classroom keeps
        the store and the events in the order of the changes (relay callbacks and
        messages race)."""
        peer_id = session.peer_id
        if session.claims is None:
            return False
        lock = self._tile_locks.setdefault(peer_id, asyncio.Lock())
        async with lock:
            if session.claims is None:
                return False  # closing: session_closed has the last word
            record = self._tiles.setdefault(peer_id, new_uplink_record(peer_id))
            before = dict(record)
            record.update(changes)
            if record == before and "state" not in changes:
                return False
            await self._store.put_uplink(session.lesson_id, record)
            await self._publish(session.lesson_id, uplink_event(record))
            return True

    async def media_started(self, session: Session, purpose: str) -> None:
        """Hook from Session._on_offer after the answer went out."""
        claims = session.claims
        if claims is None:
            return
        if purpose == GRID:
            await self._relay.send_grid(session, force=True)
            return
        if purpose != UPLINK:
            return
        # Mute and stage reached the relay before the offer (welcome / lesson events); the
        # relay applies them to an uplink when it connects. No await before the tile's lock:
        # the relay's on_uplink for this connection can only come after this.
        await self._update_uplink(session, state="connecting")

    async def uplink_changed(self, session: Session, state: str) -> None:
        """Relay callback (on_uplink / on_peer_state of the uplink), via the Node."""
        try:
            await self._update_uplink(session, state=state)
        except StoreUnavailable:
            logger.warning("uplink state not stored", extra={"peer": session.peer_id})

    async def grid_connected(self, session: Session) -> None:
        """Relay callback: the teacher's grid connected and got its slots."""
        await self._relay.send_grid(session)

    async def uplinks_changed(self, lesson_id: str) -> None:
        """Cascade: an edge's classrooms joined or left the grid's uplinks here."""
        await self._relay.push_grids(lesson_id)

    async def uplink_violation(self, session: Session, code: str) -> None:
        """Relay callback: the classroom sends over its cap (its video is held back)."""
        # counted by the relay (classroom_uplink_violations_total); errors sent by code
        await session.send_error(ClassroomError(
            ErrorCode.UPLINK_OVER_CAP, "your uplink sends more than its cap: its video is "
                                       "paused until it is back under the cap"), "uplink")
        logger.warning("uplink violation", extra={"peer": session.peer_id, "code": code,
                                                  "lesson": session.lesson_id})

    async def session_closed(self, session: Session, claims: Claims) -> None:
        """Hook from Session.close: clear the stage it held, hide its hand, drop its tile."""
        try:
            await self._session_closed(session, claims)
        except StoreUnavailable:
            logger.warning("stage: store unavailable at close; a stale stage is cleared "
                           "at the next welcome", extra={"peer": session.peer_id})

    async def _session_closed(self, session: Session, claims: Claims) -> None:
        lesson = session.lesson_id
        if claims.role == Role.TEACHER:
            self._relay.forget(session.peer_id)
            return
        if claims.role != Role.CLASSROOM:
            return
        if await self._store.clear_stage_if(lesson, session.peer_id):
            await self._publish(lesson, stage_event(None, "left"))
        if any(h["peer_id"] == session.peer_id for h in await self._store.hands(lesson)):
            # Kept in the store: the same classroom reconnecting gets its place back.
            await self._publish(lesson, {"type": "hand", "peer_id": session.peer_id,
                                         "raised": False})
        async with self._tile_locks.setdefault(session.peer_id, asyncio.Lock()):
            record = self._tiles.pop(session.peer_id, None)
            self._tile_locks.pop(session.peer_id, None)
        if record is not None:
            await self._store.drop_uplink(lesson, session.peer_id)
            record["state"] = "closed"
            await self._publish(lesson, uplink_event(record))

    # lesson events on this node ----------------------------------------------------------
    def _on_event(self, lesson_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        node = self._node
        if kind == "stage":
            self._relay.apply_stage(lesson_id, event.get("peer_id"))
        elif kind == "share":
            self._relay.apply_share(lesson_id, bool(event.get("on")))
        elif kind == "hand":
            peer = self._relay.local_peer(lesson_id, str(event.get("peer_id")))
            raised = bool(event.get("raised"))
            # (a closing session's presence is being removed: never write it again)
            if peer is not None and peer.claims is not None and peer.presence.hand != raised:
                peer.presence.hand = raised
                node.spawn(self._quiet(node.hub.update_presence(peer)))
        elif kind == "uplink":
            node.spawn(self._quiet(self._relay.push_grids(lesson_id)))
        elif kind == "muted":
            peer = self._relay.local_peer(lesson_id, str(event.get("to")))
            if peer is not None:
                node.spawn(self._quiet(self._muted(peer, bool(event.get("on")))))
        elif kind == "removed":
            peer = self._relay.local_peer(lesson_id, str(event.get("to")))
            if peer is not None:
                node.spawn(self._quiet(self._removed(peer)))
        elif kind == "lesson" and event.get("lesson_state") == "ended":
            node.spawn(self._quiet(self._store.clear_lesson(lesson_id)))

    @staticmethod
    async def _quiet(coro: Any) -> None:
        try:
            await coro
        except StoreUnavailable:
            logger.warning("stage: store unavailable; state catches up on the next event")
        except Exception:
            logger.exception("stage event handling failed")

    async def _muted(self, session: Session, on: bool) -> None:
        claims = session.claims
        if claims is None:
            return
        await self._store.set_muted(session.lesson_id, claims.sub, on)
        self._relay.set_muted(session.peer_id, on)
        await session.send({"type": "muted", "on": on})
        await self._update_uplink(session, muted=on)

    async def _removed(self, session: Session) -> None:
        await session.send({"type": "removed"})
        await session.ws.close(code=REMOVED_CLOSE_CODE, message=b"removed")
