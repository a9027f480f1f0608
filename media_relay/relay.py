"""The relay: lessons, their publishers and subscribers, keyed by the ids signaling uses.

:class:`Relay` is the one object signaling drives. It holds three things, each in a module
of its own: the offers it answers, one method per purpose (:mod:`.negotiation`), the peers
and lessons alive and their lifetimes (:mod:`.peers`), and what it remembers for lessons and
peers that do not exist yet (:mod:`.settings`). It reports to one typed listener
(:class:`~.listener.RelayListener`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from .cascade import EdgeLink, Line, OriginLink
from .config import RelayConfig, RelayError
from .grid import Grid
from .lesson import RelayLesson
from .listener import CallbackListener, RelayListener, Reports, TierChange
from .negotiation import Negotiation, check_id
from .node_load import NodeLoad
from .offer_check import check_candidate
from .peers import Peer, PeerRegistry
from .port_range import PortPool
from .publisher import Publisher
from .sdp import parse_candidate
from .settings import RememberedSettings
from .sockets import install_batched_reads
from .subscriber import Subscriber
from .tracks import KindSink
from .uplink import Uplink

logger = logging.getLogger(__name__)

__all__ = ["Peer", "Relay", "RelayListener", "TierChange"]

PeerStateCallback = Callable[[str, str, str], None]
PublisherCallback = Callable[[str, bool], None]
TierCallback = Callable[[str, str, str, str, str], None]
"""``on_tier(lesson_id, peer_id, tier, reason, direction)``."""
UplinkCallback = Callable[[str, str, bool], None]
"""``on_uplink(lesson_id, peer_id, active)``."""
ViolationCallback = Callable[[str, str, str], None]
"""``on_uplink_violation(lesson_id, peer_id, code)``."""


def _check_arg(name: str, value: Any) -> None:
    """Like :func:`.negotiation.check_id`, as a RelayError (the two-way API's bad input)."""
    try:
        check_id(name, value)
    except ValueError as exc:
        raise RelayError(RelayError.BAD_REQUEST, str(exc)) from None


class Relay:
    """Media relay for many lessons: one publisher and many subscribers per lesson.

    It reports to ``listener`` (:class:`~.listener.RelayListener`): a peer's connection
    state (``connecting|connected|failed|closed``; aiortc has no ``disconnected``), the
    teacher's media starting and stopping, a subscriber moved to another tier of the
    ladder (:class:`~.listener.TierChange`: ``direction`` ``up|down``; ``reason`` from the
    rate controller: ``loss``, ``remb``, ``cap``, ``manual``, ``probe_ok``,
    ``audio_floor`` ...), an uplink's media starting and stopping, an uplink over its cap.
    The keyword callbacks ``on_peer_state(lesson_id, peer_id, state)``,
    ``on_publisher(lesson_id, active)``, ``on_tier(lesson_id, peer_id, tier, reason,
    direction)``, ``on_uplink(lesson_id, peer_id, active)`` and
    ``on_uplink_violation(lesson_id, peer_id, code)`` are the same events, for a caller
    without a listener object.

    A peer whose connection fails or closes is removed with everything it held; a lesson
    with no peer left is removed too (it is created again by the next publish/subscribe).

    Two-way lesson (docs/two-way.md): classrooms' uplinks (:meth:`publish_uplink`), the
    teacher's grid (:meth:`subscribe_grid`, :meth:`set_grid_view`), the stage
    (:meth:`set_stage`) and the teacher's share (a second video m-line in :meth:`publish`).
    """

    def __init__(self, config: RelayConfig | None = None, *,
                 listener: RelayListener | None = None,
                 on_peer_state: PeerStateCallback | None = None,
                 on_publisher: PublisherCallback | None = None,
                 on_tier: TierCallback | None = None,
                 on_uplink: UplinkCallback | None = None,
                 on_uplink_violation: ViolationCallback | None = None) -> None:
        self.config = config or RelayConfig()
        callbacks = (on_peer_state, on_publisher, on_tier, on_uplink, on_uplink_violation)
        if listener is not None and any(c is not None for c in callbacks):
            raise ValueError("a listener or keyword callbacks, not both")
        if listener is None and any(c is not None for c in callbacks):
            listener = CallbackListener(
                on_peer_state=on_peer_state, on_publisher=on_publisher, on_tier=on_tier,
                on_uplink=on_uplink, on_uplink_violation=on_uplink_violation)
        interval = self.config.gil_switch_interval
        if interval and sys.getswitchinterval() > interval:
            sys.setswitchinterval(interval)
        if self.config.batched_reads:
            install_batched_reads()
        self.node_load = NodeLoad(self.config.busy_lag, self.config.busy_hold)
        self.reports = Reports(listener)
        self.settings = RememberedSettings()
        self.registry = PeerRegistry(self.config, self.settings, self.node_load, self.reports)
        ports = self.config.rtc_ports
        self.negotiation = Negotiation(self.config, self.registry, self.settings,
                                       self.reports, PortPool(*ports) if ports else None)
        self._ticker: asyncio.Task | None = None
        # the registry's own dicts, under the names load tests and a few tests read
        self._peers: dict[str, Peer] = self.registry.peers
        self._lessons: dict[str, RelayLesson] = self.registry.lessons

    @property
    def listener(self) -> RelayListener | None:
        return self.reports.listener

    @listener.setter
    def listener(self, listener: RelayListener | None) -> None:
        self.reports.listener = listener

    def _lesson(self, lesson_id: str) -> RelayLesson:
        return self.registry.lesson(lesson_id)

    # ---- offers --------------------------------------------------------------------------
    async def publish(self, lesson_id: str, peer_id: str, offer_sdp: str) -> str:
        """Answer the teacher's offer (video + audio). Replaces the lesson's publisher."""
        return await self.negotiation.publish(lesson_id, peer_id, offer_sdp)

    async def subscribe(self, lesson_id: str, peer_id: str, offer_sdp: str, *,
                        school: str | None = None) -> str:
        """Answer a classroom's recvonly offer (video and/or audio).

        ``school`` puts the subscriber under that school's cap (:meth:`set_cap`)."""
        answer = await self.negotiation.subscribe(lesson_id, peer_id, offer_sdp,
                                                  school or None)
        self._start_ticker()
        return answer

    async def publish_uplink(self, lesson_id: str, peer_id: str, offer_sdp: str, *,
                             school: str | None = None) -> str:
        """Answer a classroom's sendonly offer (camera and/or microphone): at most 1 VP8
        video + 1 Opus audio (``too_many_tracks`` / ``bad_sdp``). Never decoded unless on
        stage. The answer caps it (b=AS/TIAS, ``uplink_max_bitrate``); measured over
        ``uplink_over_factor`` x that for ``uplink_over_seconds``, it is reported
        (``on_uplink_violation``) and its video is not forwarded until back under the cap."""
        return await self.negotiation.uplink(lesson_id, peer_id, offer_sdp, school or None)

    async def subscribe_grid(self, lesson_id: str, peer_id: str, offer_sdp: str) -> str:
        """Answer the teacher's grid offer: K recvonly video m-lines (slots, 1 <= K <=
        ``grid_slots_max``) + at most 1 audio (the classroom on stage)."""
        return await self.negotiation.grid(lesson_id, peer_id, offer_sdp)

    async def add_ice_candidate(self, peer_id: str, candidate: dict) -> None:
        """A trickled remote candidate; ``{"candidate": ""}`` ends them.

        Candidates for unknown peers are ignored.
        """
        check_candidate(candidate)
        parsed = parse_candidate(candidate)
        peer = self.registry.get(peer_id)
        if peer is None:
            logger.debug("candidate for unknown peer %s ignored", peer_id)
            return
        if not self.negotiation.hidden.admit(peer.pc, parsed):
            return
        try:
            await peer.pc.addIceCandidate(parsed)
        except Exception as exc:  # noqa: BLE001 - aiortc rejects unknown mids with ValueError etc.
            raise RelayError(RelayError.BAD_SDP, f"candidate rejected: {exc}") from None

    async def remove_peer(self, peer_id: str) -> None:
        await self.registry.drop(peer_id)

    # ---- settings (remembered for what connects later, applied to what is live) -----------
    def set_grid_view(self, grid_peer_id: str, visible: list[str]) -> dict[str, int]:
        """The uplinks the teacher sees, in page order (unknown ids ignored): ``{uplink
        peer id: slot}``. Sticky; a newly assigned slot asks its uplink for a keyframe.
        Remembered for a grid that connects later (then ``{}``)."""
        _check_arg("grid_peer_id", grid_peer_id)
        if not isinstance(visible, list) or not all(isinstance(p, str) for p in visible):
            raise RelayError(RelayError.BAD_REQUEST, "visible must be a list of peer ids")
        self.settings.grid_views[grid_peer_id] = list(visible)
        grid = self.registry.get(grid_peer_id)
        if not isinstance(grid, Grid):
            return {}
        return grid.set_view(visible)

    def grid_slots(self, grid_peer_id: str) -> dict[str, int]:
        """The grid's current ``{uplink peer id: slot}`` (uplinks come and go)."""
        grid = self.registry.get(grid_peer_id)
        return grid.mapping() if isinstance(grid, Grid) else {}

    def set_share(self, lesson_id: str, on: bool) -> None:
        """The teacher's ``share {on}``: whether the publish's share m-line carries a share
        now (remembered for a publish that comes later)."""
        _check_arg("lesson_id", lesson_id)
        self.settings.shares[lesson_id] = on
        lesson = self.registry.lessons.get(lesson_id)
        if lesson is not None:
            lesson.set_share_on(on)

    def set_on_air(self, lesson_id: str, on: bool) -> None:
        """The lesson is live (``on``) or not: with ``config.on_air_gate`` its classrooms
        receive media only while it is (going live gives each a keyframe at once).
        Remembered for a lesson the relay builds later. Without the gate: no effect."""
        _check_arg("lesson_id", lesson_id)
        if not self.config.on_air_gate:
            return
        if on:
            self.settings.on_air.add(lesson_id)
        else:
            self.settings.on_air.discard(lesson_id)
        lesson = self.registry.lessons.get(lesson_id)
        if lesson is not None:
            lesson.set_on_air(bool(on))

    def on_air(self, lesson_id: str) -> bool:
        """Whether the lesson's classrooms receive media now (always, without the gate)."""
        return not self.config.on_air_gate or lesson_id in self.settings.on_air

    def share_state(self, lesson_id: str) -> bool | None:
        """The lesson's last ``set_share`` (None: never said)."""
        return self.settings.shares.get(lesson_id)

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
        self.settings.stages[lesson_id] = uplink_peer_id
        lesson = self.registry.lessons.get(lesson_id)
        if lesson is not None:
            lesson.set_stage(uplink_peer_id)

    def set_uplink_muted(self, uplink_peer_id: str, muted: bool) -> None:
        """The teacher mutes a classroom: its audio is forwarded nowhere (remembered for
        an uplink that reconnects)."""
        _check_arg("uplink_peer_id", uplink_peer_id)
        self.settings.set_muted(uplink_peer_id, muted)
        peer = self.registry.get(uplink_peer_id)
        if isinstance(peer, Uplink):
            peer.muted = bool(muted)

    def set_cap(self, lesson_id: str, school: str, bits_per_second: int | None) -> None:
        """A school's bandwidth cap in a lesson (None or <= 0 lifts it), shared evenly by
        that school's subscribers in the lesson (their rate controllers' caps)."""
        check_id("lesson_id", lesson_id)
        check_id("school", school)
        self.settings.set_cap(lesson_id, school, bits_per_second)
        lesson = self.registry.lessons.get(lesson_id)
        if lesson is not None:
            lesson.apply_caps(school)

    def set_low_bandwidth(self, peer_id: str, on: bool) -> None:
        """The classroom's low-bandwidth button: at most the low tier while on (remembered
        for a subscriber that connects later under the same peer id)."""
        self.settings.set_low_bandwidth(peer_id, on)
        peer = self.registry.get(peer_id)
        if isinstance(peer, Subscriber):
            peer.set_low_bandwidth(bool(on))

    # ---- what signaling reads --------------------------------------------------------------
    def uplink_stats(self, lesson_id: str) -> list[dict]:
        """Per uplink, in join order: peer_id, state, bitrate_in, frames_in, muted, slot
        (in the teacher's grid, or None), and more."""
        lesson = self.registry.lessons.get(lesson_id)
        return [u.stats() for u in lesson.uplinks.values()] if lesson is not None else []

    def stage_stats(self, lesson_id: str) -> dict:
        """The stage: peer_id, switches, ``switch_ms`` (set_stage -> the new classroom's
        first frame written to a subscriber, per switch), forward-latency percentiles."""
        lesson = self.registry.lessons.get(lesson_id)
        return lesson.stage.stats() if lesson is not None else {}

    def link_stats(self, peer_id: str) -> dict:
        """``{"rtt_ms", "loss"}`` of a subscriber's link (rate controller's view; None
        before the first receiver report); empty for an unknown peer."""
        peer = self.registry.get(peer_id)
        if not isinstance(peer, Subscriber):
            return {}
        rtt, loss = peer.controller.rtt, peer.controller.loss
        return {"rtt_ms": round(1000 * rtt, 1) if rtt is not None else None,
                "loss": round(loss, 4) if loss is not None else None}

    def subscriber(self, peer_id: str) -> Subscriber | None:
        """The subscriber under that relay peer id, if any (in-process readers of its
        streams: glass-to-glass latency, load tests)."""
        peer = self.registry.get(peer_id)
        return peer if isinstance(peer, Subscriber) else None

    def tier_of(self, peer_id: str) -> str | None:
        peer = self.registry.get(peer_id)
        return peer.tier if isinstance(peer, Subscriber) else None

    def stats(self) -> dict:
        lessons = {lid: lesson.stats() for lid, lesson in self.registry.lessons.items()}
        peers = list(self.registry.peers.values())
        return {
            "lessons": lessons,
            "publishers": sum(1 for p in peers if isinstance(p, Publisher)),
            "subscribers": sum(1 for p in peers if isinstance(p, Subscriber)),
            "uplinks": sum(1 for p in peers if isinstance(p, Uplink)),
            "grids": sum(1 for p in peers if isinstance(p, Grid)),
            "frames_encoded": sum(r["frames_encoded"] for s in lessons.values()
                                  for r in s["renditions"]),
            "keyframes": sum(r["keyframes"] for s in lessons.values() for r in s["renditions"]),
            "tiers": self._tier_counts(peers),
        }

    @staticmethod
    def _tier_counts(peers: list[Peer]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for peer in peers:
            if isinstance(peer, Subscriber):
                counts[peer.tier] = counts.get(peer.tier, 0) + 1
        return counts

    # ---- sinks (the recorder) ------------------------------------------------------------
    def attach_sink(self, lesson_id: str, sink: KindSink) -> None:
        """Attach a packet sink (``.kind`` ``"video"``/``"audio"``, ``push(packet)``), e.g.
        a recorder, to a lesson's rendition or audio fan-out, like a subscriber's track.

        Creates the lesson if it does not exist; attaching a sink again re-attaches it
        (a fresh keyframe). The sink gets the shared packets and must never change them.
        """
        check_id("lesson_id", lesson_id)
        if self.registry.closed:
            raise RelayError(RelayError.MEDIA_FAILED, "relay closed")
        lesson = self.registry.lesson(lesson_id)
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
        lesson = self.registry.lessons.get(lesson_id)
        if lesson is None:
            return
        if sink.kind == "video":
            lesson.rendition.detach(sink)
        else:
            lesson.audio.detach(sink)

    # ---- the cascade (docs/cascade.md) -------------------------------------------------------
    def origin_link(self, lesson_id: str, send: Callable[[bytes], None],
                    ask_uplink_keyframe: Callable[[int], None] | None = None) -> OriginLink:
        """An edge pulls this lesson from here: the lines it asks for (``want``) are
        attached to the lesson's feeds and their packets go to ``send`` as link frames; the
        edge's uplinks join the lesson's (keyframe requests for them: ``ask_uplink_keyframe``)."""
        check_id("lesson_id", lesson_id)
        return OriginLink(self.registry, lesson_id, send, ask_uplink_keyframe)

    def edge_link(self, lesson_id: str, send_keyframe: Callable[[Line], None],
                  send_up: Callable[[bytes], None] | None = None) -> EdgeLink:
        """This node is an edge of the lesson: frames from its origin go to the local
        subscribers (no decode or encode); keyframe requests go back by ``send_keyframe``,
        the local classrooms' uplinks the origin wants by ``send_up``."""
        check_id("lesson_id", lesson_id)
        return EdgeLink(self.registry, lesson_id, send_keyframe, send_up)

    def pulled_lessons(self) -> list[str]:
        """Lessons with subscribers here and no teacher's media here (edge candidates)."""
        return sorted(lid for lid, lesson in self.registry.lessons.items()
                      if lesson.publisher is None and not lesson.closed
                      and (lesson.subscribers or lesson.media.audio.sink_count))

    # ---- rate control ----------------------------------------------------------------------
    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(),
                                                                  name="relay-rate-control")

    async def _tick_loop(self) -> None:
        interval = self.config.rate_control_interval
        while not self.registry.closed:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for lesson in list(self.registry.lessons.values()):
                lesson.tick(now)

    # ---- lifetime --------------------------------------------------------------------------
    async def close_lesson(self, lesson_id: str) -> None:
        self.settings.forget_lesson(lesson_id)
        await self.registry.close_lesson(lesson_id)

    async def close(self) -> None:
        self.registry.closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        await self.registry.close()
