"""Answering offers, one method per purpose: the teacher's publish (camera, audio, and the
share's second video m-line), a classroom's subscribe, a classroom's uplink, the teacher's
grid.

Every offer goes the same way: checked (size, m-lines, candidates) before anything is
built; the previous peer under the same id dropped; the peer built with what it uses and
registered; aiortc's remote description, then its answer (host sockets in ``rtc_ports``);
after each await, the peer must still be the registered one of an open lesson; only then
does its lesson take it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from .config import RelayConfig, RelayError
from .grid import Grid
from .lesson import RelayLesson
from .listener import Reports, TierChange
from .mdns import HiddenCandidates
from .offer_check import check_offer
from .peers import Peer, PeerRegistry
from .port_range import EXHAUSTED, PortPool, gathering
from .publisher import Publisher
from .sdp import (
    cap_bandwidth,
    check_grid_offer,
    check_publish_offer,
    check_subscribe_offer,
    check_uplink_offer,
    preferred_codecs,
    subscribe_codecs,
    subscribe_lines,
)
from .settings import RememberedSettings
from .sockets import enlarge_receive_buffers
from .subscriber import Subscriber
from .uplink import Uplink

logger = logging.getLogger(__name__)


def check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"{name} must be a non-empty string")


class Negotiation:
    """Builds, registers and answers peers (the relay's offer methods call these)."""

    def __init__(self, config: RelayConfig, registry: PeerRegistry,
                 settings: RememberedSettings, reports: Reports,
                 ports: PortPool | None) -> None:
        self.config = config
        self.registry = registry
        self.settings = settings
        self.reports = reports
        self.ports = ports
        """Where media sockets are bound (``rtc_ports``), or None: ephemeral ports."""
        self.hidden = HiddenCandidates()
        """Peers whose browser hid its addresses (mDNS): learnt from their checks (mdns.py)."""

    # ---- per purpose -------------------------------------------------------------------
    async def publish(self, lesson_id: str, peer_id: str, offer_sdp: str) -> str:
        """The teacher's offer (video + audio, and the share's video): replaces the
        lesson's publisher."""
        kinds = check_publish_offer(offer_sdp, self.config.max_sdp_bytes)
        check_offer(offer_sdp)
        lesson, pc = await self._start(lesson_id, peer_id)
        publisher = Publisher(peer_id, pc, lesson.next_source(), config=self.config,
                              media=lesson.media,
                              on_active=functools.partial(self._publisher_active, lesson),
                              on_closed=lesson.forget)
        self.registry.register(publisher, lesson)
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "audio":
                transceiver.setCodecPreferences(preferred_codecs("audio", ("opus",), sender=False))
        await self._remote(publisher, offer_sdp)
        publisher.install()
        answer = await self._answer(publisher)
        old = lesson.set_publisher(publisher)
        if old is not None:
            await self.registry.drop(old.peer_id, only=old)
        return answer

    async def subscribe(self, lesson_id: str, peer_id: str, offer_sdp: str,
                        school: str | None) -> str:
        """A classroom's recvonly offer (video and/or audio, and the share and stage lines)."""
        kinds = check_subscribe_offer(offer_sdp, self.config.max_sdp_bytes)
        line_codecs = subscribe_codecs(offer_sdp, kinds)  # VP8, or H.264 for an old TV box
        check_offer(offer_sdp)
        lesson, pc = await self._start(lesson_id, peer_id)
        subscriber = Subscriber(
            peer_id, pc, config=self.config, media=lesson.media,
            node_load=self.registry.node_load, cap=lesson.cap_share(school), school=school,
            low_bandwidth=self.settings.low_bandwidth.get(peer_id, False),
            on_tier=functools.partial(self._tier_changed, lesson.lesson_id),
            on_closed=lesson.forget)
        self.registry.register(subscriber, lesson)
        for kind, purpose, codec in zip(kinds, subscribe_lines(kinds), line_codecs,
                                        strict=True):
            if purpose == "camera":
                track = subscriber.make_video_track()
            elif purpose == "audio":
                track = subscriber.make_audio_track()
            else:
                track = subscriber.make_line_track(kind)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(preferred_codecs(kind, (codec,), sender=True))
            if purpose in ("camera", "audio"):
                subscriber.add_track(transceiver.sender, track, codec=codec)
            else:
                subscriber.add_line(purpose, transceiver.sender, track, codec=codec)
        await self._remote(subscriber, offer_sdp)
        answer = await self._answer(subscriber)
        lesson.add_subscriber(subscriber)
        return answer

    async def uplink(self, lesson_id: str, peer_id: str, offer_sdp: str,
                     school: str | None) -> str:
        """A classroom's sendonly offer (camera and/or microphone), its answer capped."""
        kinds = check_uplink_offer(offer_sdp, self.config.max_sdp_bytes)
        check_offer(offer_sdp)
        lesson, pc = await self._start(lesson_id, peer_id)
        uplink = Uplink(peer_id, pc, lesson.next_source(), config=self.config, school=school,
                        muted=peer_id in self.settings.muted,
                        on_active=functools.partial(self._uplink_active, lesson.lesson_id),
                        on_violation=functools.partial(self._uplink_violation,
                                                       lesson.lesson_id),
                        on_closed=lesson.forget)
        self.registry.register(uplink, lesson)
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(preferred_codecs(
                kind, ("VP8",) if kind == "video" else ("opus",), sender=False))
        await self._remote(uplink, offer_sdp)
        uplink.install()
        answer = await self._answer(uplink)
        lesson.add_uplink(uplink)
        return cap_bandwidth(answer, self._uplink_limits(kinds))

    def _uplink_limits(self, kinds: list[str]) -> dict[str, int]:
        total = self.config.uplink_max_bitrate
        if "audio" not in kinds:
            return {"video": total}
        audio = min(self.config.uplink_audio_bitrate, total)
        if "video" not in kinds:
            return {"audio": audio}
        return {"video": max(1000, total - audio), "audio": audio}

    async def grid(self, lesson_id: str, peer_id: str, offer_sdp: str) -> str:
        """The teacher's grid offer: K recvonly video m-lines (slots) + at most 1 audio."""
        kinds = check_grid_offer(offer_sdp, self.config.max_sdp_bytes,
                                 self.config.grid_slots_max)
        check_offer(offer_sdp)
        lesson, pc = await self._start(lesson_id, peer_id)
        grid = Grid(peer_id, pc, config=self.config, uplinks=lesson.uplinks,
                    stage_audio=lesson.stage.audio, view=self.settings.grid_views.get(peer_id),
                    on_closed=lesson.forget)
        self.registry.register(grid, lesson)
        for kind in kinds:
            track = grid.make_track(kind)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(preferred_codecs(
                kind, ("VP8",) if kind == "video" else ("opus",), sender=True))
            grid.add_line(transceiver.sender, track)
        await self._remote(grid, offer_sdp)
        answer = await self._answer(grid)
        lesson.add_grid(grid)
        return answer

    # ---- the steps every offer takes ---------------------------------------------------
    def check_open(self, lesson_id: str, peer_id: str) -> None:
        try:
            check_id("lesson_id", lesson_id)
            check_id("peer_id", peer_id)
        except ValueError as exc:
            raise RelayError(RelayError.BAD_SDP, str(exc)) from None
        if self.registry.closed:
            raise RelayError(RelayError.MEDIA_FAILED, "relay closed")

    async def _start(self, lesson_id: str, peer_id: str) -> tuple[RelayLesson,
                                                                  RTCPeerConnection]:
        """Ids checked, the previous peer of this id dropped; its lesson and a new pc."""
        self.check_open(lesson_id, peer_id)
        await self.registry.drop(peer_id, replaced=True)
        lesson = self.registry.lesson(lesson_id)
        return lesson, RTCPeerConnection(self.config.rtc_configuration())

    async def _remote(self, peer: Peer, offer_sdp: str) -> None:
        try:
            offer_sdp = self.hidden.offer(peer.pc, offer_sdp)
            await peer.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:  # noqa: BLE001 - whatever aiortc dislikes is a bad offer
            await self.registry.drop(peer.peer_id, only=peer)
            raise RelayError(RelayError.BAD_SDP, f"offer rejected: {exc}") from None
        self.registry.check_alive(peer)

    async def _answer(self, peer: Peer) -> str:
        try:
            with gathering(self.ports) as gathered:  # host sockets in rtc_ports, if set
                await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        except Exception as exc:  # noqa: BLE001
            await self.registry.drop(peer.peer_id, only=peer)
            raise RelayError(RelayError.MEDIA_FAILED, f"answer failed: {exc}") from None
        if gathered is not None and gathered.exhausted:
            EXHAUSTED.inc()
            logger.warning("no free media port in %s for peer %s", self.ports, peer.peer_id)
            await self.registry.drop(peer.peer_id, only=peer)
            raise RelayError(RelayError.MEDIA_FAILED,
                             f"no free media port (all of {self.ports} in use)")
        self.registry.check_alive(peer)
        enlarge_receive_buffers(peer.pc, self.config.socket_receive_buffer)
        return peer.pc.localDescription.sdp

    # ---- what the peers report, to the listener ----------------------------------------
    def _publisher_active(self, lesson: RelayLesson, publisher: Publisher,
                          active: bool) -> None:
        if lesson.publisher is not None and lesson.publisher is not publisher:
            return  # superseded by a newer publisher: its own state is what counts
        if active and lesson.publisher is not publisher:
            return
        self.reports.publisher(lesson.lesson_id, active)

    def _tier_changed(self, lesson_id: str, subscriber: Subscriber, tier: str, reason: str,
                      direction: str) -> None:
        if not subscriber.replaced:
            self.reports.tier(lesson_id, subscriber.peer_id, TierChange(tier, reason, direction))

    def _uplink_active(self, lesson_id: str, uplink: Uplink, active: bool) -> None:
        if not uplink.replaced:
            self.reports.uplink(lesson_id, uplink.peer_id, active)

    def _uplink_violation(self, lesson_id: str, uplink: Uplink, code: str) -> None:
        self.reports.uplink_violation(lesson_id, uplink.peer_id, code)
