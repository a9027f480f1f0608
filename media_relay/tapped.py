"""What a peer that sends media into the relay has in common (the teacher's publish, a
classroom's uplink): receivers tapped before aiortc's decoder, media activity with a
timeout, PLIs through the receiver, and one lifetime (taps, watch task, connection)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from prometheus_client import Gauge

from . import webrtc_private
from .ingress import TapQueue, install_tap

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .config import RelayConfig


class TappedPeer:
    """Base of Publisher and Uplink. ``on_active(peer, bool)`` reports media starting and
    stopping (no media for ``media_timeout``); ``gauge`` counts the live ones;
    ``on_closed(peer)`` is called once when it starts closing (its lesson forgets it)."""

    watch_name = "tapped"

    def __init__(self, peer_id: str, pc: RTCPeerConnection, source: int, *,
                 config: RelayConfig, on_active: Callable[[Any, bool], None], gauge: Gauge,
                 on_closed: Callable[[Any], None] | None = None) -> None:
        self.config = config
        self.peer_id = peer_id
        self.pc = pc
        self.source = source
        self._on_active = on_active
        self._on_closed = on_closed
        self._gauge = gauge
        self._taps: list[TapQueue] = []
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self.replaced = False
        """Replaced by the same peer id: its state changes are not reported."""
        self.active = False
        self.last_media = 0.0
        self.bytes_in = 0
        self.keyframe_requests = 0
        gauge.inc()

    # ---- set-up --------------------------------------------------------------------------
    def _tap(self, receiver: RTCRtpReceiver, callback: Callable[[Any, Any], None]) -> None:
        self._taps.append(install_tap(receiver, callback, decode=False))

    def _start_watch(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._watch(), name=f"{self.watch_name}-watch-{self.peer_id}"))

    # ---- taps (event loop, inside aiortc's receive path) --------------------------------
    def _media(self, now: float, size: int) -> None:
        self.last_media = now
        self.bytes_in += size
        if not self.active:
            self.active = True
            self._on_active(self, True)

    def _pli(self, receiver: RTCRtpReceiver | None) -> None:
        """Make ``receiver`` send a PLI with its next RTCP feedback."""
        if receiver is not None and not self._closed:
            self.keyframe_requests += 1
            webrtc_private.ask_for_keyframe(receiver)

    # ---- the watch task ------------------------------------------------------------------
    def _watch_interval(self) -> float:
        return min(0.5, self.config.media_timeout / 2)

    def _check(self, now: float) -> None:
        """Called on every watch tick (an uplink checks its rate here)."""

    async def _watch(self) -> None:
        timeout = self.config.media_timeout
        while True:
            await asyncio.sleep(self._watch_interval())
            now = time.monotonic()
            self._check(now)
            if self.active and now - self.last_media > timeout:
                self.active = False
                self._on_active(self, False)

    # ---- lifetime ------------------------------------------------------------------------
    def _release(self) -> None:
        """Drop references to receivers (after the connection closed)."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_closed is not None:
            self._on_closed(self)
        self._gauge.dec()
        for tap in self._taps:
            tap.detach()
        for task in self._tasks:
            task.cancel()
        try:
            await self.pc.close()
        except Exception as exc:  # noqa: BLE001 - aiortc raises on a half-negotiated pc
            logger.warning("closing %s %s failed: %r", self.watch_name, self.peer_id, exc)
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        self._release()
        if self.active:
            self.active = False
            self._on_active(self, False)
