"""A classroom's connection: shared packets out, nothing encoded or packetized per subscriber."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpSender

from . import metrics, webrtc_private
from .outline import OutLine, SampledLatency
from .priority import video_plan
from .rate_control import DOWN, UP, Decision, RateController, ReceiverReport
from .rtpout import RtpStream
from .stage import StageVideoLine, session_of
from .tracks import PacketTrack, PassthroughEncoder, Sink

if TYPE_CHECKING:
    from .config import RelayConfig
    from .lesson_media import LessonMedia
    from .node_load import NodeLoad

logger = logging.getLogger(__name__)

TierCallback = Callable[["Subscriber", str, str, str], None]
"""(subscriber, tier, reason, direction) after a subscriber moved to another tier."""


class Subscriber:
    """Owns a classroom's RTCPeerConnection, its two packet tracks and (batched) RTP streams.

    Each sender gets a :class:`PassthroughEncoder` before it starts (it records REMB, and
    passes the shared payloads through when the sender's own task sends). With
    ``batched_send`` (the default) an :class:`RtpStream` per sender is what the rendition
    and the audio fan-out write to; otherwise the :class:`PacketTrack` queues are, and
    aiortc's sender task reads them. Either way keyframe requests (PLI/FIR) go to the
    rendition, which rate-limits them.

    Its :class:`RateController` (fed with the RTCP receiver reports and REMB of its
    streams, the bytes sent, and ticked by the relay) picks the tier: video comes from that
    tier's rendition (none on the audio-only tier); a switch restarts the video stream at
    the new tier's next keyframe, on the same RTP stream.

    Extra m-lines (docs/two-way.md, in offer order per kind): ``share`` (the teacher's
    share), ``stage_video`` and ``stage_audio`` (the classroom on stage), each an
    :class:`OutLine`. While the teacher shares, the share gets the tier and the camera one
    tier lower (:func:`priority.video_plan`); the stage video follows the tier too.

    It gets what it uses, never the lesson: the lesson's feeds (``media``: camera, share,
    audio, stage, and ``share_active``, which the lesson pushes), the node's load
    (``node_load``), its first ``cap``; the lesson calls :meth:`set_cap`, :meth:`route`
    and :meth:`budget_changed` when those change. ``on_tier(subscriber, tier, reason,
    direction)`` reports a switch, ``on_closed(subscriber)`` that it closes.

    On air (``media.on_air``, pushed by the lesson through :meth:`on_air_changed`): off air
    an attached subscriber is attached to no feed (camera, share, stage, audio): nothing of
    the lesson leaves the relay towards this classroom before the lesson is live or after
    it; going on air attaches every line again, each from a keyframe requested at once.
    """

    def __init__(self, peer_id: str, pc: RTCPeerConnection, *, config: RelayConfig,
                 media: LessonMedia, node_load: NodeLoad, cap: int | None = None,
                 school: str | None = None, low_bandwidth: bool = False,
                 on_tier: TierCallback | None = None,
                 on_closed: Callable[[Subscriber], None] | None = None) -> None:
        self.config = config
        self.ladder = media.ladder
        self.media = media
        self.node_load = node_load
        self.peer_id = peer_id
        self.pc = pc
        self.school = school
        self.created = now = time.monotonic()
        self.controller = RateController(
            dataclasses.replace(config.controller, ladder=self.ladder), now=now,
            cap=cap, low_bandwidth=low_bandwidth)
        self.tier = self.controller.send_tier if config.rate_control else \
            self.controller.limit_tier()
        self.tier_reason = "join"
        self.switches = 0
        self._on_tier = on_tier
        self._on_closed = on_closed
        self.video: PacketTrack | None = None
        self.audio: PacketTrack | None = None
        self.streams: dict[str, RtpStream] = {}
        self.video_codec = "VP8"
        """The camera line's codec (``H264`` for a classroom that offered only H.264)."""
        self._encoders: list[PassthroughEncoder] = []
        self.keyframe_requests = 0
        self._closed = False
        self.replaced = False
        self._attached = False
        self._flowing = False
        """Attached to the lesson's feeds (attached and on air)."""
        self.lines: dict[str, OutLine] = {}
        """Extra m-lines by purpose: share, stage_video, stage_audio."""
        self.camera_tier: str | None = None
        """Tier the camera line is attached to (None: paused or not attached)."""
        self.share_tier: str | None = None
        self._stage_line: StageVideoLine | None = None

    def add_track(self, sender: RTCRtpSender, track: PacketTrack, codec: str = "VP8") -> None:
        """Wire ``track``'s sender; call after addTransceiver, before negotiation.
        ``codec``: what the offer's video accepts (:func:`.sdp.subscribe_codecs`)."""
        encoder = PassthroughEncoder(track.kind)
        webrtc_private.set_sender_encoder(sender, encoder)
        self._encoders.append(encoder)
        video = track.kind == "video"
        if self.config.batched_send:
            self.streams[track.kind] = RtpStream(
                sender, track.kind,
                on_keyframe_request=self._on_keyframe_request if video else None,
                on_ready=self._on_video_ready if video else None)
        elif video:
            webrtc_private.replace_keyframe_handler(sender, self._on_keyframe_request)
        if video:
            self.video = track
            self.video_codec = codec
            track.video_codec = codec  # type: ignore[attr-defined]  # the feeds read it
            if track.kind in self.streams:
                self.streams[track.kind].video_codec = codec
        else:
            self.audio = track

    @property
    def rendition(self) -> Any:
        """The rendition this subscriber's video comes from (None: audio-only)."""
        camera = self.media.camera
        table = camera.h264 if self.video_codec == "H264" else camera.renditions
        return table.get(self.camera_tier or self.tier)

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self._need_keyframe("pli")

    def _on_video_ready(self) -> None:
        if not self._closed:
            self._need_keyframe("join")

    def _need_keyframe(self, reason: str) -> None:
        rendition = self.rendition
        if rendition is not None:
            rendition.request_keyframe(reason)

    # ---- rate control (event loop) -------------------------------------------------------
    def _on_report(self, stream: RtpStream, report: Any, expected: int | None) -> None:
        video = stream.kind == "video"
        rtt = stream.rtt
        loss = report.fraction_lost / 256.0
        metrics.SUBSCRIBER_LOSS.observe(loss)
        if rtt is not None:
            metrics.SUBSCRIBER_RTT.observe(rtt)
        if not self.config.rate_control:
            return
        block = ReceiverReport.from_rtcp(
            report.fraction_lost, report.packets_lost, report.jitter,
            clock_rate=90_000 if video else 48_000, rtt=rtt, kind=stream.kind,
            expected=expected)
        now = time.monotonic()
        self.controller.node_busy = self.node_load.busy(now)
        self._apply(self.controller.on_receiver_report(now, block))

    def _on_remb(self, bitrate: int) -> None:
        if self.config.rate_control:
            self._apply(self.controller.on_remb(time.monotonic(), float(bitrate)))

    def bytes_sent(self) -> int:
        """RTP bytes written to this subscriber (payloads + 12-byte headers)."""
        return sum(s.octets + 12 * s.packets for s in self.streams.values()) + sum(
            line.bytes_sent for line in self.lines.values())

    def tick(self, now: float) -> None:
        if self._closed or not self._attached:
            return
        if self.config.rate_control:
            self.controller.on_bytes_sent(now, self.bytes_sent())
            self._apply(self.controller.tick(now))

    def set_cap(self, cap: int | None) -> None:
        if cap != self.controller.cap:
            self._apply(self.controller.set_cap(time.monotonic(), cap))

    def set_low_bandwidth(self, on: bool) -> None:
        self._apply(self.controller.set_low_bandwidth(time.monotonic(), on))

    def _apply(self, decision: Decision) -> None:
        if self._closed:
            return
        tier = self.controller.send_tier if self.config.rate_control else \
            self.controller.limit_tier()
        if tier != self.tier:
            self.set_tier(tier, decision.reason or "rate")
        self._pad_for_probe(decision)

    def _pad_for_probe(self, decision: Decision) -> None:
        """Probing without media: pad the video stream up to the probed tier's rate, so the
        link is tested before the climb is committed (the padding stops with the probe)."""
        stream = self.streams.get("video")
        if stream is None:
            return
        padding = None
        if self.media.on_air and decision.probe_bitrate and decision.probe_tier \
                and decision.tier == self.tier:
            # the probe tier's budget above the current one (both count every line)
            padding = decision.probe_bitrate - self.controller.required(self.tier)
        if padding != stream.padding_bitrate:
            stream.set_padding(padding)

    def set_tier(self, tier: str, reason: str) -> None:
        """Move this subscriber's video to ``tier`` (a keyframe from it first)."""
        old = self.tier
        if tier == old or self._closed:
            return
        ladder = self.ladder
        direction = UP if ladder.higher(tier, old) else DOWN
        self.tier = tier
        self.tier_reason = reason
        self.switches += 1
        metrics.TIER_SWITCHES.labels(direction=direction).inc()
        if self._attached:
            self.route("switch")
        if self._on_tier is not None:
            try:
                self._on_tier(self, tier, reason, direction)
            except Exception:
                logger.exception("on_tier callback failed")

    def make_video_track(self) -> PacketTrack:
        return PacketTrack("video", self.config.video_queue_frames, self._need_keyframe)

    def make_audio_track(self) -> PacketTrack:
        return PacketTrack("audio", self.config.audio_queue_packets)

    def _sinks(self) -> tuple[Sink | None, Sink | None]:
        if self.config.batched_send:
            return self.streams.get("video"), self.streams.get("audio")
        return self.video, self.audio

    def attach(self) -> None:
        """The connection is up: receive the lesson's packets while it is on air (video
        from the next keyframe)."""
        if self._attached or self._closed:
            return
        self._attached = True
        for stream in self.streams.values():
            stream.on_report = self._on_report
            stream.on_remb = self._on_remb
        if self.media.on_air:
            self._start_media()

    def on_air_changed(self) -> None:
        """The lesson went on air or off air (``media.on_air``): start or stop receiving."""
        if not self._attached or self._closed:
            return
        if self.media.on_air:
            self._start_media()
        else:
            self._stop_media()

    def _start_media(self) -> None:
        """Attach every line to its feed: each rendition it joins is asked for a keyframe
        now (``Rendition.attach``), so going live does not wait for the next GOP."""
        if self._flowing:
            return
        self._flowing = True
        _, audio = self._sinks()
        self.route("join")
        self._attach_stage_audio()
        if audio is not None:
            self.media.audio.attach(audio)

    def _stop_media(self) -> None:
        """Detach every line from its feed (the RTP streams stay, and restart at a keyframe
        when attached again)."""
        if not self._flowing:
            return
        self._flowing = False
        _, audio = self._sinks()
        if audio is not None:
            self.media.audio.detach(audio)
        self._detach_feeds()
        stream = self.streams.get("video")
        if stream is not None:
            stream.set_padding(None)

    async def close(self) -> None:
        if self._closed:
            return
        if self._on_closed is not None:
            self._on_closed(self)
        video, audio = self._sinks()
        self._detach_feeds()
        for line in self.lines.values():
            line.close()
        self._closed = True
        if audio is not None:
            self.media.audio.detach(audio)
        for stream in self.streams.values():
            stream.close()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        await self.pc.close()
        self._encoders.clear()

    def stats(self) -> dict:
        stats: dict = {"peer_id": self.peer_id, "state": self.pc.connectionState,
                       "keyframe_requests": self.keyframe_requests, "tier": self.tier,
                       "tier_reason": self.tier_reason, "switches": self.switches,
                       "school": self.school, "video_codec": self.video_codec,
                       "rate_control": self.controller.stats(time.monotonic())}
        if self.config.batched_send:
            for kind, stream in self.streams.items():
                stats[kind] = stream.stats()
        else:
            for track in (self.video, self.audio):
                if track is not None:
                    stats[track.kind] = {
                        "path": "tasks", "sent": track.sent, "queued": track.queued,
                        "dropped": track.dropped, "overflows": track.overflows,
                        "wait_ms_avg": round(1000 * track.wait_seconds / track.sent, 3)
                        if track.sent else None,
                        "wait_ms_max": round(1000 * track.wait_max, 3)}
        for purpose, line in self.lines.items():
            stats[purpose] = line.stats()
        stats["on_air"] = self._flowing
        stats["camera_tier"] = self.camera_tier
        stats["share_tier"] = self.share_tier
        remb = [e.remb_bitrate for e in self._encoders if e.remb_bitrate is not None]
        stats["remb_bitrate"] = remb[0] if remb else None
        return stats

    # ---- two-way lesson: share and stage lines (event loop) -------------------------------
    def make_line_track(self, kind: str) -> PacketTrack:
        config = self.config
        if kind == "video":
            return PacketTrack("video", config.video_queue_frames)
        return PacketTrack("audio", config.audio_queue_packets)

    def add_line(self, purpose: str, sender: RTCRtpSender, track: PacketTrack,
                 codec: str = "VP8") -> None:
        """Wire an extra m-line (``share``, ``stage_video``, ``stage_audio``); call after
        addTransceiver, before negotiation. ``codec``: the video line's (VP8 or H264)."""
        config = self.config
        stage = self.media.stage
        if purpose == "share":
            def share_keyframe() -> None:
                self.keyframe_requests += 1
                if self.share_tier is not None:
                    self.media.share.request_keyframe(self.share_tier, "pli", codec)

            line = OutLine(config, sender, track, on_keyframe_request=share_keyframe,
                           on_ready=share_keyframe, latency=metrics.LATENCY_SHARE)
        elif purpose == "stage_video":
            def stage_keyframe() -> None:
                self.keyframe_requests += 1
                if self._stage_line is not None:
                    stage.request_keyframe(self._stage_line, "pli")  # reads its video_codec

            line = OutLine(config, sender, track, on_keyframe_request=stage_keyframe,
                           on_ready=stage_keyframe,
                           latency=SampledLatency(metrics.LATENCY_STAGE_VIDEO,
                                                  stage.video_latency))
            self._stage_line = StageVideoLine(stage, line)
            self._stage_line.video_codec = codec  # type: ignore[attr-defined]
        else:
            line = OutLine(config, sender, track,
                           latency=SampledLatency(metrics.LATENCY_STAGE_AUDIO,
                                                  stage.audio_latency))
        if track.kind == "video":
            line.sink.video_codec = codec  # type: ignore[attr-defined]  # the feeds read it
        self.lines[purpose] = line

    def budget_changed(self) -> None:
        """The stage or the share started or stopped: what each tier costs this link
        changed (a cap may no longer fit the tier)."""
        if self.lines and self.config.rate_control and not self._closed:
            self._apply(self.controller.set_budget(time.monotonic(), self.required))

    def required(self, tier: str) -> int:
        """Bit/s this classroom's link must carry on ``tier``: the video lines it receives
        now (camera and share as the share priority splits the tier, the classroom on
        stage no larger than its uplink) and each audio line, with header overhead. The
        rate controller's budget (a thin link must carry all of them, not the camera)."""
        ladder = self.ladder
        if not ladder.spec(tier).has_video:
            return ladder.required(tier)
        camera, share = video_plan(ladder, tier, self.media.share_active
                                   and "share" in self.lines)
        video = sum(ladder.spec(t).video_bitrate for t in (camera, share) if t is not None)
        audio_lines = 1
        stage = self.media.stage
        if stage.live:
            if self._stage_line is not None:
                stage_tier = stage.tier_for(tier)
                video += ladder.spec(stage_tier).video_bitrate if stage_tier else 0
            if "stage_audio" in self.lines and stage.audio.exclude != session_of(self.peer_id):
                audio_lines += 1  # (the classroom on stage does not hear itself)
        return ladder.carried(video, audio_lines)

    def route(self, reason: str = "switch") -> None:
        """Attach the camera, share and stage video lines to the renditions this
        subscriber's tier and the share priority call for (moving what changed)."""
        if self._closed or not self._flowing:
            return
        if reason in ("join", "share"):
            self.budget_changed()
        share_line = self.lines.get("share")
        camera, share = video_plan(self.ladder, self.tier,
                                   self.media.share_active and share_line is not None)
        video, _ = self._sinks()
        if video is not None:
            self.camera_tier = self.media.camera.move(video, self.camera_tier, camera, reason,
                                                       video.restart)
        if share_line is not None:
            self.share_tier = self.media.share.move(share_line.sink, self.share_tier, share,
                                                     reason, share_line.restart)
        if self._stage_line is not None:
            self.media.stage.attach_line(self._stage_line, self.tier)

    def _attach_stage_audio(self) -> None:
        line = self.lines.get("stage_audio")
        if line is not None:
            self.media.stage.audio.attach(line.sink, session_of(self.peer_id))

    def _detach_feeds(self) -> None:
        """Detach the camera, share and stage lines from their feeds (each sink restarts:
        it sends nothing until a keyframe of the feed it joins next)."""
        video, _ = self._sinks()
        if video is not None and self.camera_tier is not None:
            self.media.camera.move(video, self.camera_tier, None, "off_air", video.restart)
        self.camera_tier = None
        share_line = self.lines.get("share")
        if share_line is not None and self.share_tier is not None:
            self.media.share.move(share_line.sink, self.share_tier, None, "off_air",
                                  share_line.restart)
        self.share_tier = None
        if self._stage_line is not None:
            self.media.stage.detach_line(self._stage_line)
            self._stage_line.restart()
        audio_line = self.lines.get("stage_audio")
        if audio_line is not None:
            self.media.stage.audio.detach(audio_line.sink)
