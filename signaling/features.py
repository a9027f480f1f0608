"""Features plug into a node without editing the core: their messages, routes and state.

A feature (practice and tests, the two-way stage, recording) subclasses :class:`Feature`
and overrides the hooks it needs; every hook the core calls is declared here with a no-op
default, and the core calls each one on every feature directly (never by name, never
looked up by the feature's ``name``):

=====================  ==================================================================
hook                   called by
=====================  ==================================================================
``start(node)``        ``Node.start``, in order, before any socket
``close()``            ``Node.close``, in reverse order, after the sockets and the relay
``add_routes(app, k)`` ``build_app``: the feature's HTTP routes (authz.guard'ed)
``place(s, claims, m)`` ``Session`` at hello, token checked, before any store work: a
                       message to send instead of ``welcome`` (placement's ``redirect``)
``welcome(session)``   ``Session`` at hello: extra ``welcome`` fields (state to resume)
``handle(s, msg)``     ``Session``: one of ``messages``' client types (role already checked)
``media_started``      ``Session._on_offer`` after the answer went out: ``(session, purpose)``
``session_closed``     ``Session.close`` after its media is released: ``(session, claims)``
``uplink_changed``     relay: a classroom's uplink is ``active``/``inactive``/``failed``/
                       ``closed`` (``Node._on_uplink`` / ``_on_peer_state``)
``grid_connected``     relay: the teacher's grid connection is up (``Node._on_peer_state``)
``uplink_violation``   relay: a classroom sends over its cap (``Node._on_uplink_violation``)
``uplinks_changed``    cascade: an edge's uplinks joined or left a lesson whose origin is
                       here (``Node.remote_uplinks_changed``)
=====================  ==================================================================

Lesson events (``lesson``, ``media``, ``stage``, quiz rounds, ...) are not a hook: a
feature that wants them listens with ``node.hub.add_listener`` in ``start``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .messages.base import ServerMessage
from .protocol import Message, MessageSpec

if TYPE_CHECKING:
    from .app import Node
    from .auth import Claims
    from .handlers import Session


class Feature:
    """What a node runs besides its core: subclass it and override the hooks you need."""

    name: str
    messages: tuple[type[Message | ServerMessage], ...] = ()
    """The message types the feature owns, both directions (signaling/messages/base.py
    says how to declare one); ``handle`` gets the client ones."""
    schemas: dict[str, MessageSpec] = {}
    """Old-style table (converted to typed messages at start); declare ``messages``."""

    async def start(self, node: Node) -> None:
        """The node starts (before any socket): open stores, listen to lesson events."""

    async def close(self) -> None:
        """The node stops (its sockets and relay are closed already)."""

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        """Add the feature's HTTP routes (each checked by ``authz.guard`` or ``authz.public``)."""

    async def place(self, session: Session, claims: Claims, hello: Message
                    ) -> ServerMessage | None:
        """A message that sends this socket elsewhere instead of welcoming it (the socket
        is then closed), or None to welcome it here."""
        return None

    async def welcome(self, session: Session) -> dict[str, Any]:
        """Extra ``welcome`` fields for this session (state to resume)."""
        return {}

    async def handle(self, session: Session, message: Message) -> None:
        """Act on one of ``messages``' client types, decoded and typed (role checked)."""
        raise NotImplementedError(f"feature {self.name!r} declares {message.type!r} "
                                  "but does not handle it")

    async def media_started(self, session: Session, purpose: str) -> None:
        """One of the session's media connections (``purpose``) was answered."""

    async def session_closed(self, session: Session, claims: Claims) -> None:
        """The session ended (its media already released, its presence not yet)."""

    async def uplink_changed(self, session: Session, state: str) -> None:
        """The session's uplink is ``active``, ``inactive``, ``failed`` or ``closed``."""

    async def grid_connected(self, session: Session) -> None:
        """The session's grid connection (a teacher's) is connected."""

    async def uplink_violation(self, session: Session, code: str) -> None:
        """The session's uplink sends over its cap (``code``: the relay's reason)."""

    async def uplinks_changed(self, lesson_id: str) -> None:
        """Another node's classrooms' uplinks joined or left this node's lesson (grids)."""
