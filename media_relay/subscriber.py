"""A classroom's connection: shared packets out, nothing encoded or packetized per subscriber."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiortc import RTCPeerConnection, RTCRtpSender

from .rtpout import RtpStream
from .tracks import PacketTrack, PassthroughEncoder, Sink

if TYPE_CHECKING:
    from .lesson import RelayLesson


class Subscriber:
    """Owns a classroom's RTCPeerConnection, its two packet tracks and (batched) RTP streams.

    Each sender gets a :class:`PassthroughEncoder` before it starts (it records REMB, and
    passes the shared payloads through when the sender's own task sends). With
    ``batched_send`` (the default) an :class:`RtpStream` per sender is what the rendition
    and the audio fan-out write to; otherwise the :class:`PacketTrack` queues are, and
    aiortc's sender task reads them. Either way keyframe requests (PLI/FIR) go to the
    rendition, which rate-limits them.
    """

    def __init__(self, lesson: RelayLesson, peer_id: str, pc: RTCPeerConnection) -> None:
        self.lesson = lesson
        self.peer_id = peer_id
        self.pc = pc
        self.created = time.monotonic()
        self.video: PacketTrack | None = None
        self.audio: PacketTrack | None = None
        self.streams: dict[str, RtpStream] = {}
        self._encoders: list[PassthroughEncoder] = []
        self.keyframe_requests = 0
        self._closed = False
        self.replaced = False
        self._attached = False

    def add_track(self, sender: RTCRtpSender, track: PacketTrack) -> None:
        """Wire ``track``'s sender; call after addTransceiver, before negotiation."""
        encoder = PassthroughEncoder(track.kind)
        sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]
        self._encoders.append(encoder)
        video = track.kind == "video"
        if self.lesson.config.batched_send:
            self.streams[track.kind] = RtpStream(
                sender, track.kind,
                on_keyframe_request=self._on_keyframe_request if video else None,
                on_ready=self._on_video_ready if video else None)
        elif video:
            sender._send_keyframe = self._on_keyframe_request  # type: ignore[method-assign]
        if video:
            self.video = track
        else:
            self.audio = track

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self.lesson.rendition.request_keyframe("pli")

    def _on_video_ready(self) -> None:
        if not self._closed:
            self.lesson.rendition.request_keyframe("join")

    def _need_keyframe(self, reason: str) -> None:
        self.lesson.rendition.request_keyframe(reason)

    def make_video_track(self) -> PacketTrack:
        return PacketTrack("video", self.lesson.config.video_queue_frames, self._need_keyframe)

    def make_audio_track(self) -> PacketTrack:
        return PacketTrack("audio", self.lesson.config.audio_queue_packets)

    def _sinks(self) -> tuple[Sink | None, Sink | None]:
        if self.lesson.config.batched_send:
            return self.streams.get("video"), self.streams.get("audio")
        return self.video, self.audio

    def attach(self) -> None:
        """Start receiving the lesson's packets (video from the next keyframe)."""
        if self._attached or self._closed:
            return
        self._attached = True
        video, audio = self._sinks()
        if video is not None:
            self.lesson.rendition.attach(video)
        if audio is not None:
            self.lesson.audio.attach(audio)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        video, audio = self._sinks()
        if video is not None:
            self.lesson.rendition.detach(video)
        if audio is not None:
            self.lesson.audio.detach(audio)
        for stream in self.streams.values():
            stream.close()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        await self.pc.close()
        self._encoders.clear()

    def stats(self) -> dict:
        stats: dict = {"peer_id": self.peer_id, "state": self.pc.connectionState,
                       "keyframe_requests": self.keyframe_requests}
        if self.lesson.config.batched_send:
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
        remb = [e.remb_bitrate for e in self._encoders if e.remb_bitrate is not None]
        stats["remb_bitrate"] = remb[0] if remb else None
        return stats
