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
        self._sent: dict[str, list[dict[str, Any]]] = {}  # teacher peer id -> last slots

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a stale id must not break a handler
            logger.warning("relay %s failed: %s", what, exc, extra={"args": repr(args)[:200]})
            return None

    def local_peer(self, lesson_id: str, peer_id: str) -> Session | None:
        """This node's session ``peer_id`` in the lesson, if its socket is here."""
        for peer in self.node.hub.local_peers(lesson_id):
            if peer.peer_id == peer_id:
                return peer  # type: ignore[return-value]
        return None

    # stage and mute ---------------------------------------------------------------------
    def apply_stage(self, lesson_id: str, peer_id: str | None) -> None:
        """Every node tells its relay: the one holding the uplink (now or when it connects)
        puts it on stage, the others have no such uplink and send nothing."""
        rid = relay_peer_id(peer_id, UPLINK) if peer_id else None
        self._call("set_stage", self.node.relay.set_stage, lesson_id, rid)

    def apply_share(self, lesson_id: str, on: bool) -> None:
        """Every node tells its relay; only the one holding the teacher's publish sends."""
        self._call("set_share", self.node.relay.set_share, lesson_id, on)

    def set_muted(self, peer_id: str, muted: bool) -> None:
        """Mute a classroom's uplink here (the relay remembers it for an uplink that
        connects later, so call it before the offer too)."""
        self._call("set_uplink_muted", self.node.relay.set_uplink_muted,
                   relay_peer_id(peer_id, UPLINK), muted)

    # grid -------------------------------------------------------------------------------
    def forget(self, teacher_peer_id: str) -> None:
        self._sent.pop(teacher_peer_id, None)

    @staticmethod
    def _slots(mapping: dict[str, int] | None) -> list[dict[str, Any]]:
        slots = [{"slot": slot, "peer_id": session_peer_id(rid)[0]}
                 for rid, slot in (mapping or {}).items()]
        slots.sort(key=lambda s: s["slot"])
        return slots

    async def set_view(self, teacher: Session, peers: list[str]) -> None:
        """The teacher's page shows these classrooms (session peer ids, page order): the
        relay forwards only them; reply ``grid`` (empty until the grid connects)."""
        rids = [relay_peer_id(p, UPLINK) for p in peers]
        mapping = self._call("set_grid_view", self.node.relay.set_grid_view,
                             relay_peer_id(teacher.peer_id, GRID), rids)
        slots = self._slots(mapping)
        self._sent[teacher.peer_id] = slots
        await teacher.send({"type": "grid", "slots": slots})

    async def send_grid(self, teacher: Session, *, force: bool = False) -> None:
        """Send the teacher's current slots if they changed since the last ``grid``."""
        mapping = self._call("grid_slots", self.node.relay.grid_slots,
                             relay_peer_id(teacher.peer_id, GRID))
        slots = self._slots(mapping)
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
