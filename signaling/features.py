"""Features plug into a node without editing the core: their messages, routes and state.

A feature (practice and tests, later recording controls, stage) declares the message
types it owns with their schemas, handles them for a :class:`~signaling.handlers.Session`,
adds fields to ``welcome`` (what a reconnecting page must know) and its own HTTP routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from .protocol import Message, MessageSpec

if TYPE_CHECKING:
    from .app import Node
    from .handlers import Session


class Feature(Protocol):
    name: str
    schemas: dict[str, MessageSpec]

    async def start(self, node: Node) -> None: ...

    async def close(self) -> None: ...

    async def handle(self, session: Session, message: Message) -> None:
        """Act on one of ``schemas``' message types (role already checked)."""

    async def welcome(self, session: Session) -> dict[str, Any]:
        """Extra ``welcome`` fields for this session (state to resume)."""

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None: ...
