"""The relay: lessons, their publishers and subscribers, keyed by the ids signaling uses."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from .config import RelayConfig, RelayError
from .grid import Grid
from .lesson import RelayLesson
from .mdns import HiddenCandidates
from .node_load import NodeLoad
from .offer_check import check_candidate, check_offer
from .port_range import EXHAUSTED, PortPool, gathering
from .publisher import Publisher
from .sdp import (
    cap_bandwidth,
    check_grid_offer,
    check_publish_offer,
    check_subscribe_offer,
    check_uplink_offer,
    parse_candidate,
    preferred_codecs,
    subscribe_codecs,
    subscribe_lines,
)
from .sockets import enlarge_receive_buffers, install_batched_reads
from .subscriber import Subscriber
from .tracks import KindSink
from .uplink import Uplink

logger = logging.getLogger(__name__)

PeerStateCallback = Callable[[str, str, str], None]
PublisherCallback = Callable[[str, bool], None]
TierCallback = Callable[[str, str, str, str, str], None]
"""``on_tier(lesson_id, peer_id, tier, reason, direction)``."""
UplinkCallback = Callable[[str, str, bool], None]
"""``on_uplink(lesson_id, peer_id, active)``."""
ViolationCallback = Callable[[str, str, str], None]
"""``on_uplink_violation(lesson_id, peer_id, code)``."""

Peer = Publisher | Subscriber | Uplink | Grid

_REPORTED_STATES = {"connecting", "connected", "disconnected", "failed", "closed"}


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"{name} must be a non-empty string")


def _check_arg(name: str, value: Any) -> None:
    """Like :func:`_check_id`, as a RelayError (the two-way API's bad input)."""
    try:
        _check_id(name, value)
    except ValueError as exc:
        raise RelayError(RelayError.BAD_REQUEST, str(exc)) from None


async def _close_quietly(peer: Peer) -> None:
    """Close a peer; never raise. aiortc's ``close`` raises on a connection whose answer
    failed half-way (no transport yet), and cleanup must still finish."""
    try:
        await peer.close()
    except Exception as exc:  # noqa: BLE001 - logged, the peer is gone either way
        logger.warning("closing peer %s failed: %r", peer.peer_id, exc)


class Relay:
    """Media relay for many lessons: one publisher and many subscribers per lesson.

    ``on_peer_state(lesson_id, peer_id, state)`` reports a peer's connection state
    (``connecting|connected|failed|closed``; aiortc has no ``disconnected``);
    ``on_publisher(lesson_id, active)`` reports the teacher's media starting and stopping.
    A peer whose connection fails or closes is removed with everything it held; a lesson
    with no peer left is removed too (it is created again by the next publish/subscribe).
    ``on_tier(lesson_id, peer_id, tier, reason, direction)`` reports a subscriber moved to
    another tier of the ladder (``direction`` ``up|down``; ``reason`` from the rate
    controller: ``loss``, ``remb``, ``cap``, ``manual``, ``probe_ok``, ``audio_floor`` ...).

    Two-way lesson (docs/two-way.md): classrooms' uplinks (:meth:`publish_uplink`), the
    teacher's grid (:meth:`subscribe_grid`, :meth:`set_grid_view`), the stage
    (:meth:`set_stage`) and the teacher's share (a second video m-line in :meth:`publish`).
    ``on_uplink(lesson_id, peer_id, active)`` reports an uplink's media starting and
    stopping; ``on_uplink_violation(lesson_id, peer_id, code)`` an uplink over its cap.
    """

    def __init__(self, config: RelayConfig | None = None, *,
                 on_peer_state: PeerStateCallback | None = None,
                 on_publisher: PublisherCallback | None = None,
                 on_tier: TierCallback | None = None,
                 on_uplink: UplinkCallback | None = None,
                 on_uplink_violation: ViolationCallback | None = None) -> None:
        self.config = config or RelayConfig()
        interval = self.config.gil_switch_interval
        if interval and sys.getswitchinterval() > interval:
            sys.setswitchinterval(interval)
        if self.config.batched_reads:
            install_batched_reads()
        self.node_load = NodeLoad(self.config.busy_lag, self.config.busy_hold)
        self._on_peer_state = on_peer_state
        self._on_publisher = on_publisher
        self._on_tier = on_tier
        self._on_uplink = on_uplink
        self._on_uplink_violation = on_uplink_violation
        self._muted: set[str] = set()
        """Uplink peer ids the teacher muted (kept for an uplink that reconnects)."""
        self._stages: dict[str, str | None] = {}
        self._shares: dict[str, bool] = {}
        """lesson id -> uplink peer id on stage (kept for a lesson created later)."""
        self._grid_views: dict[str, list[str]] = {}
        """grid peer id -> the teacher's view (kept for a grid that connects later)."""
        self._low_bandwidth: dict[str, bool] = {}
        self._caps: dict[str, dict[str, int]] = {}
        """lesson id -> school -> bit/s (kept for a lesson created later)."""
        self._ticker: asyncio.Task | None = None
        self._lessons: dict[str, RelayLesson] = {}
        self._peers: dict[str, Peer] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task] = set()
        self._hidden = HiddenCandidates()
        ports = self.config.rtc_ports
        self._ports = PortPool(*ports) if ports else None
        """Where media sockets are bound (``rtc_ports``), or None: ephemeral ports."""
        """Peers whose browser hid its addresses (mDNS): learnt from their checks (mdns.py)."""
        self._closed = False

    # ---- public interface --------------------------------------------------------------
    async def publish(self, lesson_id: str, peer_id: str, offer_sdp: str) -> str:
        """Answer the teacher's offer (video + audio). Replaces the lesson's publisher."""
        kinds = check_publish_offer(offer_sdp, self.config.max_sdp_bytes)
        check_offer(offer_sdp)
        self._check_open(lesson_id, peer_id)
        await self._drop_peer(peer_id, replaced=True)
        lesson = self._lesson(lesson_id)
        pc = RTCPeerConnection(self.config.rtc_configuration())
        publisher = Publisher(lesson, peer_id, pc, lesson.next_source(), self._publisher_active)
        self._register(peer_id, publisher)
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "audio":
                transceiver.setCodecPreferences(preferred_codecs("audio", ("opus",), sender=False))
        await self._negotiate(publisher, offer_sdp)
        publisher.install()
        answer = await self._answer(publisher)
        old, lesson.publisher = lesson.publisher, publisher
        lesson.set_share_line(publisher.has_share)
        if old is not None:
            await self._drop_peer(old.peer_id, only=old)
        return answer

    async def subscribe(self, lesson_id: str, peer_id: str, offer_sdp: str, *,
                        school: str | None = None) -> str:
        """Answer a classroom's recvonly offer (video and/or audio).

        ``school`` puts the subscriber under that school's cap (:meth:`set_cap`)."""
        kinds = check_subscribe_offer(offer_sdp, self.config.max_sdp_bytes)
        line_codecs = subscribe_codecs(offer_sdp, kinds)  # VP8, or H.264 for an old TV box
        check_offer(offer_sdp)
        self._check_open(lesson_id, peer_id)
        await self._drop_peer(peer_id, replaced=True)
        lesson = self._lesson(lesson_id)
        pc = RTCPeerConnection(self.config.rtc_configuration())
        subscriber = Subscriber(lesson, peer_id, pc, school=school or None,
                                low_bandwidth=self._low_bandwidth.get(peer_id, False),
                                on_tier=self._tier_changed)
        self._register(peer_id, subscriber)
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
        await self._negotiate(subscriber, offer_sdp)
        answer = await self._answer(subscriber)
        lesson.subscribers[peer_id] = subscriber
        self._apply_caps(lesson, subscriber.school)
        self._start_ticker()
        return answer

    # ---- two-way lesson ------------------------------------------------------------------
    async def publish_uplink(self, lesson_id: str, peer_id: str, offer_sdp: str, *,
                             school: str | None = None) -> str:
        """Answer a classroom's sendonly offer (camera and/or microphone): at most 1 VP8
        video + 1 Opus audio (``too_many_tracks`` / ``bad_sdp``). Never decoded unless on
        stage. The answer caps it (b=AS/TIAS, ``uplink_max_bitrate``); measured over
        ``uplink_over_factor`` x that for ``uplink_over_seconds``, it is reported
        (``on_uplink_violation``) and its video is not forwarded until back under the cap."""
        kinds = check_uplink_offer(offer_sdp, self.config.max_sdp_bytes)
        check_offer(offer_sdp)
        self._check_open(lesson_id, peer_id)
        await self._drop_peer(peer_id, replaced=True)
        lesson = self._lesson(lesson_id)
        pc = RTCPeerConnection(self.config.rtc_configuration())
        uplink = Uplink(lesson, peer_id, pc, lesson.next_source(), school=school or None,
                        muted=peer_id in self._muted, on_active=self._uplink_active,
                        on_violation=self._uplink_violation)
        self._register(peer_id, uplink)
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(preferred_codecs(
                kind, ("VP8",) if kind == "video" else ("opus",), sender=False))
        await self._negotiate(uplink, offer_sdp)
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

    async def subscribe_grid(self, lesson_id: str, peer_id: str, offer_sdp: str) -> str:
        """Answer the teacher's grid offer: K recvonly video m-lines (slots, 1 <= K <=
        ``grid_slots_max``) + at most 1 audio (the classroom on stage)."""
        kinds = check_grid_offer(offer_sdp, self.config.max_sdp_bytes,
                                 self.config.grid_slots_max)
        check_offer(offer_sdp)
        self._check_open(lesson_id, peer_id)
        await self._drop_peer(peer_id, replaced=True)
        lesson = self._lesson(lesson_id)
        pc = RTCPeerConnection(self.config.rtc_configuration())
        grid = Grid(lesson, peer_id, pc)
        grid.view = self._grid_views.get(peer_id)
        self._register(peer_id, grid)
        for kind in kinds:
            track = grid.make_track(kind)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(preferred_codecs(
                kind, ("VP8",) if kind == "video" else ("opus",), sender=True))
            grid.add_line(transceiver.sender, track)
        await self._negotiate(grid, offer_sdp)
        answer = await self._answer(grid)
        lesson.grids[peer_id] = grid
        return answer

    def set_grid_view(self, grid_peer_id: str, visible: list[str]) -> dict[str, int]:
        """The uplinks the teacher sees, in page order (unknown ids ignored): ``{uplink
        peer id: slot}``. Sticky; a newly assigned slot asks its uplink for a keyframe.
        Remembered for a grid that connects later (then ``{}``)."""
        _check_arg("grid_peer_id", grid_peer_id)
        if not isinstance(visible, list) or not all(isinstance(p, str) for p in visible):
            raise RelayError(RelayError.BAD_REQUEST, "visible must be a list of peer ids")
        self._grid_views[grid_peer_id] = list(visible)
        grid = self._peers.get(grid_peer_id)
        if not isinstance(grid, Grid):
            return {}
        return grid.set_view(visible)

    def grid_slots(self, grid_peer_id: str) -> dict[str, int]:
        """The grid's current ``{uplink peer id: slot}`` (uplinks come and go)."""
        grid = self._peers.get(grid_peer_id)
        return grid.mapping() if isinstance(grid, Grid) else {}

    def set_share(self, lesson_id: str, on: bool) -> None:
        """The teacher's ``share {on}``: whether the publish's share m-line carries a share
        now (remembered for a publish that comes later)."""
        _check_arg("lesson_id", lesson_id)
        self._shares[lesson_id] = on
        lesson = self._lessons.get(lesson_id)
        if lesson is not None:
            lesson.set_share_on(on)

    def share_state(self, lesson_id: str) -> bool | None:
        """The lesson's last ``set_share`` (None: never said)."""
        return self._shares.get(lesson_id)

    def note_loop_lag(self, lag: float) -> None:
        """How late (s) the node's event loop just woke (signaling/loop_lag.py feeds this):
        while it runs late, RTT growth is not taken as congestion (node_load.py)."""
        self.node_load.note_lag(lag)

    def set_stage(self, lesson_id: str, uplink_peer_id: str | None) -> None:
        """Put a classroom's uplink on stage (None clears it): decoded once, encoded once
        per tier for every subscriber's stage video line, its Opus to every stage audio
        line but its own classroom's and to the grid. An uplink not connected yet goes on
        stage when it connects."""
        _check_arg("lesson_id", lesson_id)
        if uplink_peer_id is not None:
            _check_arg("uplink_peer_id", uplink_peer_id)
        self._stages[lesson_id] = uplink_peer_id
        lesson = self._lessons.get(lesson_id)
        if lesson is not None:
            lesson.stage.set(uplink_peer_id)

    def set_uplink_muted(self, uplink_peer_id: str, muted: bool) -> None:
        """The teacher mutes a classroom: its audio is forwarded nowhere (remembered for
        an uplink that reconnects)."""
        _check_arg("uplink_peer_id", uplink_peer_id)
        if muted:
            self._muted.add(uplink_peer_id)
        else:
            self._muted.discard(uplink_peer_id)
        peer = self._peers.get(uplink_peer_id)
        if isinstance(peer, Uplink):
            peer.muted = bool(muted)

    def uplink_stats(self, lesson_id: str) -> list[dict]:
        """Per uplink, in join order: peer_id, state, bitrate_in, frames_in, muted, slot
        (in the teacher's grid, or None), and more."""
        lesson = self._lessons.get(lesson_id)
        return [u.stats() for u in lesson.uplinks.values()] if lesson is not None else []

    def stage_stats(self, lesson_id: str) -> dict:
        """The stage: peer_id, switches, ``switch_ms`` (set_stage -> the new classroom's
        first frame written to a subscriber, per switch), forward-latency percentiles."""
        lesson = self._lessons.get(lesson_id)
        return lesson.stage.stats() if lesson is not None else {}

    def _uplink_active(self, uplink: Uplink, active: bool) -> None:
        if self._on_uplink is None or uplink.replaced:
            return
        try:
            self._on_uplink(uplink.lesson.lesson_id, uplink.peer_id, active)
        except Exception:
            logger.exception("on_uplink callback failed")

    def _uplink_violation(self, uplink: Uplink, code: str) -> None:
        if self._on_uplink_violation is None:
            return
        try:
            self._on_uplink_violation(uplink.lesson.lesson_id, uplink.peer_id, code)
        except Exception:
            logger.exception("on_uplink_violation callback failed")

    def set_cap(self, lesson_id: str, school: str, bits_per_second: int | None) -> None:
        """A school's bandwidth cap in a lesson (None or <= 0 lifts it), shared evenly by
        that school's subscribers in the lesson (their rate controllers' caps)."""
        _check_id("lesson_id", lesson_id)
        _check_id("school", school)
        caps = self._caps.setdefault(lesson_id, {})
        if bits_per_second is None or bits_per_second <= 0:
            caps.pop(school, None)
        else:
            caps[school] = int(bits_per_second)
        lesson = self._lessons.get(lesson_id)
        if lesson is not None:
            self._apply_caps(lesson, school)

    def set_low_bandwidth(self, peer_id: str, on: bool) -> None:
        """The classroom's low-bandwidth button: at most the low tier while on (remembered
        for a subscriber that connects later under the same peer id)."""
        if on:
            self._low_bandwidth[peer_id] = True
        else:
            self._low_bandwidth.pop(peer_id, None)
        peer = self._peers.get(peer_id)
        if isinstance(peer, Subscriber):
            peer.set_low_bandwidth(bool(on))

    def link_stats(self, peer_id: str) -> dict:
        """``{"rtt_ms", "loss"}`` of a subscriber's link (rate controller's view; None
        before the first receiver report); empty for an unknown peer."""
        peer = self._peers.get(peer_id)
        if not isinstance(peer, Subscriber):
            return {}
        rtt, loss = peer.controller.rtt, peer.controller.loss
        return {"rtt_ms": round(1000 * rtt, 1) if rtt is not None else None,
                "loss": round(loss, 4) if loss is not None else None}

    def tier_of(self, peer_id: str) -> str | None:
        peer = self._peers.get(peer_id)
        return peer.tier if isinstance(peer, Subscriber) else None

    def _apply_caps(self, lesson: RelayLesson, school: str | None) -> None:
        if not school:
            return
        share = lesson.cap_share(school)
        for subscriber in list(lesson.subscribers.values()):
            if subscriber.school == school:
                subscriber.set_cap(share)

    def _tier_changed(self, subscriber: Subscriber, tier: str, reason: str,
                      direction: str) -> None:
        if self._on_tier is not None and not subscriber.replaced:
            try:
                self._on_tier(subscriber.lesson.lesson_id, subscriber.peer_id, tier, reason,
                              direction)
            except Exception:
                logger.exception("on_tier callback failed")

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(),
                                                                  name="relay-rate-control")

    async def _tick_loop(self) -> None:
        interval = self.config.rate_control_interval
        while not self._closed:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for lesson in list(self._lessons.values()):
                for subscriber in list(lesson.subscribers.values()):
                    try:
                        subscriber.tick(now)
                    except Exception:
                        logger.exception("rate control tick failed for %s",
                                         subscriber.peer_id)

    async def add_ice_candidate(self, peer_id: str, candidate: dict) -> None:
        """A trickled remote candidate; ``{"candidate": ""}`` ends them.

        Candidates for unknown peers are ignored.
        """
        check_candidate(candidate)
        parsed = parse_candidate(candidate)
        peer = self._peers.get(peer_id)
        if peer is None:
            logger.debug("candidate for unknown peer %s ignored", peer_id)
            return
        if not self._hidden.admit(peer.pc, parsed):
            return
        try:
            await peer.pc.addIceCandidate(parsed)
        except Exception as exc:  # noqa: BLE001 - aiortc rejects unknown mids with ValueError etc.
            raise RelayError(RelayError.BAD_SDP, f"candidate rejected: {exc}") from None

    async def remove_peer(self, peer_id: str) -> None:
        await self._drop_peer(peer_id)

    def attach_sink(self, lesson_id: str, sink: KindSink) -> None:
        """Attach a packet sink (``.kind`` ``"video"``/``"audio"``, ``push(packet)``), e.g.
        a recorder, to a lesson's rendition or audio fan-out, like a subscriber's track.

        Creates the lesson if it does not exist; attaching a sink again re-attaches it
        (a fresh keyframe). The sink gets the shared packets and must never change them.
        """
        _check_id("lesson_id", lesson_id)
        if self._closed:
            raise RelayError(RelayError.MEDIA_FAILED, "relay closed")
        lesson = self._lesson(lesson_id)
        if sink.kind == "video":
            lesson.rendition.detach(sink)
            lesson.rendition.attach(sink)
        elif sink.kind == "audio":
            lesson.audio.detach(sink)
            lesson.audio.attach(sink)
        else:
            raise ValueError(f"sink kind must be video or audio, not {sink.kind!r}")

    def detach_sink(self, lesson_id: str, sink: KindSink) -> None:
        """Detach a sink attached with :meth:`attach_sink` (no-op when it is not attached)."""
        lesson = self._lessons.get(lesson_id)
        if lesson is None:
            return
        if sink.kind == "video":
            lesson.rendition.detach(sink)
        else:
            lesson.audio.detach(sink)

    async def close_lesson(self, lesson_id: str) -> None:
        self._caps.pop(lesson_id, None)
        self._stages.pop(lesson_id, None)
        self._shares.pop(lesson_id, None)
        lesson = self._lessons.pop(lesson_id, None)
        if lesson is None:
            return
        for peer_id, peer in list(self._peers.items()):
            if peer.lesson is lesson:
                self._unregister(peer_id)
        await lesson.close()

    async def close(self) -> None:
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        for lesson_id in list(self._lessons):
            await self.close_lesson(lesson_id)
        for peer_id in list(self._peers):
            await self._drop_peer(peer_id)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def stats(self) -> dict:
        lessons = {lid: lesson.stats() for lid, lesson in self._lessons.items()}
        return {
            "lessons": lessons,
            "publishers": sum(1 for p in self._peers.values() if isinstance(p, Publisher)),
            "subscribers": sum(1 for p in self._peers.values() if isinstance(p, Subscriber)),
            "uplinks": sum(1 for p in self._peers.values() if isinstance(p, Uplink)),
            "grids": sum(1 for p in self._peers.values() if isinstance(p, Grid)),
            "frames_encoded": sum(r["frames_encoded"] for s in lessons.values()
                                  for r in s["renditions"]),
            "keyframes": sum(r["keyframes"] for s in lessons.values() for r in s["renditions"]),
            "tiers": self._tier_counts(),
        }

    def _tier_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for peer in self._peers.values():
            if isinstance(peer, Subscriber):
                counts[peer.tier] = counts.get(peer.tier, 0) + 1
        return counts

    # ---- negotiation -------------------------------------------------------------------
    def _check_open(self, lesson_id: str, peer_id: str) -> None:
        try:
            _check_id("lesson_id", lesson_id)
            _check_id("peer_id", peer_id)
        except ValueError as exc:
            raise RelayError(RelayError.BAD_SDP, str(exc)) from None
        if self._closed:
            raise RelayError(RelayError.MEDIA_FAILED, "relay closed")

    def _lesson(self, lesson_id: str) -> RelayLesson:
        lesson = self._lessons.get(lesson_id)
        if lesson is None:
            lesson = self._lessons[lesson_id] = RelayLesson(lesson_id, self.config)
            lesson.caps = self._caps.setdefault(lesson_id, {})
            lesson.node_load = self.node_load
            lesson.stage.set(self._stages.get(lesson_id))
            lesson.share_on = self._shares.get(lesson_id)
        return lesson

    async def _negotiate(self, peer: Peer, offer_sdp: str) -> None:
        try:
            offer_sdp = self._hidden.offer(peer.pc, offer_sdp)
            await peer.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:  # noqa: BLE001 - whatever aiortc dislikes is a bad offer
            await self._drop_peer(peer.peer_id, only=peer)
            raise RelayError(RelayError.BAD_SDP, f"offer rejected: {exc}") from None
        self._check_alive(peer)

    async def _answer(self, peer: Peer) -> str:
        try:
            with gathering(self._ports) as gathered:  # host sockets in rtc_ports, if set
                await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        except Exception as exc:  # noqa: BLE001
            await self._drop_peer(peer.peer_id, only=peer)
            raise RelayError(RelayError.MEDIA_FAILED, f"answer failed: {exc}") from None
        if gathered is not None and gathered.exhausted:
            EXHAUSTED.inc()
            logger.warning("no free media port in %s for peer %s", self._ports, peer.peer_id)
            await self._drop_peer(peer.peer_id, only=peer)
            raise RelayError(RelayError.MEDIA_FAILED,
                             f"no free media port (all of {self._ports} in use)")
        self._check_alive(peer)
        enlarge_receive_buffers(peer.pc, self.config.socket_receive_buffer)
        return peer.pc.localDescription.sdp

    def _check_alive(self, peer: Peer) -> None:
        """The peer may have been removed or replaced while we awaited aiortc."""
        if self._peers.get(peer.peer_id) is not peer or peer.lesson.closed:
            if self._peers.get(peer.peer_id) is peer:
                self._unregister(peer.peer_id)
            self._spawn(_close_quietly(peer))
            raise RelayError(RelayError.MEDIA_FAILED, "peer was removed during negotiation")

    # ---- peers -------------------------------------------------------------------------
    def _register(self, peer_id: str, peer: Peer) -> None:
        self._peers[peer_id] = peer
        pc = peer.pc

        @pc.on("connectionstatechange")
        def _state_changed() -> None:
            self._peer_state(peer, pc.connectionState)

        self._timers[peer_id] = asyncio.get_running_loop().call_later(
            self.config.connect_timeout, self._connect_timeout, peer)

    def _unregister(self, peer_id: str) -> Peer | None:
        timer = self._timers.pop(peer_id, None)
        if timer is not None:
            timer.cancel()
        return self._peers.pop(peer_id, None)

    def _peer_state(self, peer: Peer, state: str) -> None:
        current = self._peers.get(peer.peer_id) is peer
        if state == "connected" and current:
            timer = self._timers.pop(peer.peer_id, None)
            if timer is not None:
                timer.cancel()
            if isinstance(peer, Subscriber) and peer.lesson.subscribers.get(peer.peer_id) is peer:
                peer.attach()
            elif isinstance(peer, Grid) and peer.lesson.grids.get(peer.peer_id) is peer:
                peer.attach()
        if state in _REPORTED_STATES and not peer.replaced:
            self._report_state(peer.lesson.lesson_id, peer.peer_id, state)
        if state in ("failed", "closed") and current:
            self._spawn(self._drop_peer(peer.peer_id, only=peer))

    def _connect_timeout(self, peer: Peer) -> None:
        self._timers.pop(peer.peer_id, None)
        if self._peers.get(peer.peer_id) is peer and peer.pc.connectionState != "connected":
            logger.info("peer %s did not connect in time", peer.peer_id)
            self._report_state(peer.lesson.lesson_id, peer.peer_id, "failed")
            self._spawn(self._drop_peer(peer.peer_id, only=peer))

    async def _drop_peer(self, peer_id: str, *, only: Peer | None = None,
                         replaced: bool = False) -> None:
        """Close a peer and everything it holds; remove its lesson if nobody is left."""
        peer = self._peers.get(peer_id)
        if peer is None or (only is not None and peer is not only):
            if only is not None:  # no longer registered (replaced meanwhile): still close it
                await _close_quietly(only)
                await self._close_if_empty(only.lesson)
            return
        self._unregister(peer_id)
        peer.replaced = replaced
        lesson = peer.lesson
        if isinstance(peer, Publisher):
            if lesson.publisher is peer:
                lesson.publisher = None
        elif isinstance(peer, Uplink):
            lesson.remove_uplink(peer)
        elif isinstance(peer, Grid):
            if lesson.grids.get(peer_id) is peer:
                del lesson.grids[peer_id]
        elif lesson.subscribers.get(peer_id) is peer:
            del lesson.subscribers[peer_id]
            self._apply_caps(lesson, peer.school)
        await _close_quietly(peer)
        await self._close_if_empty(lesson)

    async def _close_if_empty(self, lesson: RelayLesson) -> None:
        if lesson.closed or any(p.lesson is lesson for p in self._peers.values()):
            return
        if self._lessons.get(lesson.lesson_id) is lesson:
            del self._lessons[lesson.lesson_id]
        await lesson.close()

    def _publisher_active(self, publisher: Publisher, active: bool) -> None:
        lesson = publisher.lesson
        if lesson.publisher is not None and lesson.publisher is not publisher:
            return  # superseded by a newer publisher: its own state is what counts
        if active and lesson.publisher is not publisher:
            return
        if self._on_publisher is not None:
            try:
                self._on_publisher(lesson.lesson_id, active)
            except Exception:
                logger.exception("on_publisher callback failed")

    def _report_state(self, lesson_id: str, peer_id: str, state: str) -> None:
        if self._on_peer_state is not None:
            try:
                self._on_peer_state(lesson_id, peer_id, state)
            except Exception:
                logger.exception("on_peer_state callback failed")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
