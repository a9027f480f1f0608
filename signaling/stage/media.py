"""Glue between the stage feature and this node's relay: uplink tiles, grid slots, stage.

The relay knows relay peer ids (``<session peer id>/<purpose>``) and nothing of sessions;
this module maps both ways. Media is per node: a classroom's uplink lives in the relay of
the node its socket reached, so every relay call is made by the node that holds the peer,
driven by lesson events that every node hears (the memory store has one node).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signaling.handlers import relay_peer_id, session_peer_id

if TYPE_CHECKING:
    from signaling.app import Node
    from signaling.handlers import Session

logger = logging.getLogger(__name__)

UPLINK, GRID = "uplink", "grid"


def uplink_event(record: dict[str, Any]) -> dict[str, Any]:
    """The ``uplink`` lesson event of a stored uplink record (the teacher's tile)."""
    return {"type": "uplink", "peer_id": record["peer_id"], "state": record["state"],
            "audio": record["audio"], "video": record["video"], "muted": record["muted"]}


def new_uplink_record(peer_id: str) -> dict[str, Any]:
    return {"peer_id": peer_id, "state": "none", "audio": True, "video": True,
            "muted": False}


class RelayGlue:
    """Every relay call the stage makes, each safe: a relay refusal is logged, not raised
    (the store already holds the truth; the relay catches up on the next event)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._views: dict[str, list[str] | None] = {}  # teacher peer id -> session peer ids
        self._sent: dict[str, list[dict[str, Any]]] = {}  # teacher peer id -> last slots

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a stale id must not break a handler
            logger.warning("relay %s failed: %s", what, exc, extra={"args": repr(args)[:200]})
            return None

    def local_session(self, peer_id: str, purpose: str = UPLINK) -> Session | None:
        """This node's session holding ``peer_id``'s ``purpose`` connection, if any."""
        return self.node.sessions_by_relay_id.get(relay_peer_id(peer_id, purpose))

    def local_peer(self, lesson_id: str, peer_id: str) -> Session | None:
        for peer in self.node.hub.local_peers(lesson_id):
            if peer.peer_id == peer_id:
                return peer  # type: ignore[return-value]
        return None

    # stage ------------------------------------------------------------------------------
    def apply_stage(self, lesson_id: str, peer_id: str | None) -> bool:
        """Put ``peer_id``'s uplink on this node's stage if it is here, else clear the
        stage here (the node holding it puts it on). True when this node holds it."""
        here = peer_id is not None and self.local_session(peer_id) is not None
        rid = relay_peer_id(peer_id, UPLINK) if here and peer_id else None
        self._call("set_stage", self.node.relay.set_stage, lesson_id, rid)
        return here

    def set_muted(self, peer_id: str, muted: bool) -> None:
        if self.local_session(peer_id) is not None:
            self._call("set_uplink_muted", self.node.relay.set_uplink_muted,
                       relay_peer_id(peer_id, UPLINK), muted)

    # grid -------------------------------------------------------------------------------
    def set_view(self, teacher_peer_id: str, peers: list[str] | None) -> None:
        self._views[teacher_peer_id] = peers

    def forget(self, teacher_peer_id: str) -> None:
        self._views.pop(teacher_peer_id, None)
        self._sent.pop(teacher_peer_id, None)

    def grid_slots(self, teacher: Session) -> list[dict[str, Any]]:
        """Apply the teacher's view (default: every uplink in the relay's order) and return
        ``[{slot, peer_id}]`` with session peer ids, by slot."""
        if GRID not in teacher.media:
            return []
        view = self._views.get(teacher.peer_id)
        if view is None:
            stats = self._call("uplink_stats", self.node.relay.uplink_stats,
                               teacher.lesson_id) or []
            rids = [s["peer_id"] for s in stats]
        else:
            rids = [relay_peer_id(p, UPLINK) for p in view]
        mapping = self._call("set_grid_view", self.node.relay.set_grid_view,
                             relay_peer_id(teacher.peer_id, GRID), rids) or {}
        slots = [{"slot": slot, "peer_id": session_peer_id(rid)[0]}
                 for rid, slot in mapping.items()]
        slots.sort(key=lambda s: s["slot"])
        return slots

    async def send_grid(self, teacher: Session, *, force: bool = False) -> None:
        slots = self.grid_slots(teacher)
        if not force and self._sent.get(teacher.peer_id) == slots:
            return
        self._sent[teacher.peer_id] = slots
        await teacher.send({"type": "grid", "slots": slots})

    async def push_grids(self, lesson_id: str) -> None:
        """Uplinks came or went: resend each local teacher's grid that changed."""
        for session in list(self.node.sessions):
            if (session.lesson_id == lesson_id and session.claims is not None
                    and GRID in session.media):
                await self.send_grid(session)
