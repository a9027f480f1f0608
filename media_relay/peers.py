"""The relay's lessons and peers, keyed by the ids signaling uses, and their lifetimes.

A peer (publisher, subscriber, uplink, grid) is registered under its relay peer id with
the lesson it belongs to, from the moment its offer is taken. It lives until its connection
fails or closes, it does not connect within ``connect_timeout``, the same peer id offers
again (it is replaced), signaling removes it, or its lesson closes. Closing a peer is
enough: it tells its lesson (``on_closed``), which forgets it. A lesson is built by the
first peer or sink that needs it, with what the relay remembers for it, and closed when its
last peer is gone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from typing import Any

from .config import RelayConfig, RelayError
from .grid import Grid
from .lesson import RelayLesson
from .listener import Reports
from .node_load import NodeLoad
from .publisher import Publisher
from .settings import RememberedSettings
from .subscriber import Subscriber
from .uplink import Uplink

logger = logging.getLogger(__name__)

Peer = Publisher | Subscriber | Uplink | Grid

_REPORTED_STATES = {"connecting", "connected", "disconnected", "failed", "closed"}


async def close_quietly(peer: Peer) -> None:
    """Close a peer; never raise. aiortc's ``close`` raises on a connection whose answer
    failed half-way (no transport yet), and cleanup must still finish."""
    try:
        await peer.close()
    except Exception as exc:  # noqa: BLE001 - logged, the peer is gone either way
        logger.warning("closing peer %s failed: %r", peer.peer_id, exc)


class PeerRegistry:
    """Lessons by id, peers by relay peer id, and the lesson of every live peer."""

    def __init__(self, config: RelayConfig, settings: RememberedSettings,
                 node_load: NodeLoad, reports: Reports) -> None:
        self.config = config
        self.settings = settings
        self.node_load = node_load
        self.reports = reports
        self.lessons: dict[str, RelayLesson] = {}
        self.peers: dict[str, Peer] = {}
        self._homes: weakref.WeakKeyDictionary[Peer, RelayLesson] = \
            weakref.WeakKeyDictionary()
        """The lesson of every peer still alive (registered or not: a replaced peer still
        reports its last states, and closes into its own lesson)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task] = set()
        self.closed = False

    # ---- lessons -----------------------------------------------------------------------
    def lesson(self, lesson_id: str) -> RelayLesson:
        """The lesson, built now (with what the relay remembers for it) if it is not live."""
        lesson = self.lessons.get(lesson_id)
        if lesson is None:
            settings = self.settings
            lesson = self.lessons[lesson_id] = RelayLesson(
                lesson_id, self.config, node_load=self.node_load,
                caps=settings.caps_of(lesson_id), stage=settings.stages.get(lesson_id),
                share_on=settings.shares.get(lesson_id),
                on_air=not self.config.on_air_gate or lesson_id in settings.on_air)
        return lesson

    def home(self, peer: Peer) -> RelayLesson | None:
        return self._homes.get(peer)

    async def close_lesson(self, lesson_id: str) -> None:
        lesson = self.lessons.pop(lesson_id, None)
        if lesson is None:
            return
        for peer_id, peer in list(self.peers.items()):
            if self._homes.get(peer) is lesson:
                self.unregister(peer_id)
        await lesson.close()

    async def close_if_empty(self, lesson: RelayLesson) -> None:
        if lesson.closed or any(self._homes.get(p) is lesson for p in self.peers.values()):
            return
        if self.lessons.get(lesson.lesson_id) is lesson:
            del self.lessons[lesson.lesson_id]
        await lesson.close()

    # ---- peers -------------------------------------------------------------------------
    def get(self, peer_id: str) -> Peer | None:
        return self.peers.get(peer_id)

    def register(self, peer: Peer, lesson: RelayLesson) -> None:
        """From the offer on: connection states reported, dropped if not connected in time."""
        peer_id = peer.peer_id
        self.peers[peer_id] = peer
        self._homes[peer] = lesson
        pc = peer.pc

        @pc.on("connectionstatechange")
        def _state_changed() -> None:
            self._peer_state(peer, pc.connectionState)

        self._timers[peer_id] = asyncio.get_running_loop().call_later(
            self.config.connect_timeout, self._connect_timeout, peer)

    def unregister(self, peer_id: str) -> Peer | None:
        timer = self._timers.pop(peer_id, None)
        if timer is not None:
            timer.cancel()
        return self.peers.pop(peer_id, None)

    def check_alive(self, peer: Peer) -> None:
        """The peer may have been removed or replaced (or its lesson closed) while an offer
        awaited aiortc: then it is closed and the offer fails."""
        home = self._homes.get(peer)
        if self.peers.get(peer.peer_id) is not peer or home is None or home.closed:
            if self.peers.get(peer.peer_id) is peer:
                self.unregister(peer.peer_id)
            self.spawn(close_quietly(peer))
            raise RelayError(RelayError.MEDIA_FAILED, "peer was removed during negotiation")

    def _peer_state(self, peer: Peer, state: str) -> None:
        current = self.peers.get(peer.peer_id) is peer
        home = self._homes.get(peer)
        if state == "connected" and current:
            timer = self._timers.pop(peer.peer_id, None)
            if timer is not None:
                timer.cancel()
            if home is not None:
                home.connected(peer)
        if state in _REPORTED_STATES and not peer.replaced and home is not None:
            self.reports.peer_state(home.lesson_id, peer.peer_id, state)
        if state in ("failed", "closed") and current:
            self.spawn(self.drop(peer.peer_id, only=peer))

    def _connect_timeout(self, peer: Peer) -> None:
        self._timers.pop(peer.peer_id, None)
        if self.peers.get(peer.peer_id) is peer and peer.pc.connectionState != "connected":
            logger.info("peer %s did not connect in time", peer.peer_id)
            home = self._homes.get(peer)
            if home is not None:
                self.reports.peer_state(home.lesson_id, peer.peer_id, "failed")
            self.spawn(self.drop(peer.peer_id, only=peer))

    async def drop(self, peer_id: str, *, only: Peer | None = None,
                   replaced: bool = False) -> None:
        """Close a peer (its lesson forgets it) and its lesson if nobody is left.
        ``only``: that peer, not a newer one under the same id."""
        peer = self.peers.get(peer_id)
        if peer is None or (only is not None and peer is not only):
            if only is not None:  # no longer registered (replaced meanwhile): still close it
                home = self._homes.get(only)
                await close_quietly(only)
                if home is not None:
                    await self.close_if_empty(home)
            return
        self.unregister(peer_id)
        peer.replaced = replaced
        home = self._homes.get(peer)
        await close_quietly(peer)
        if home is not None:
            await self.close_if_empty(home)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Close every lesson and peer; wait for the closes already under way."""
        self.closed = True
        for lesson_id in list(self.lessons):
            await self.close_lesson(lesson_id)
        for peer_id in list(self.peers):
            await self.drop(peer_id)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
