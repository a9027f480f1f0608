"""A classroom's connection: shared packets out, nothing encoded or packetized per subscriber."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiortc import RTCPeerConnection, RTCRtpSender

from .tracks import PacketTrack, PassthroughEncoder

if TYPE_CHECKING:
    from .lesson import RelayLesson


class Subscriber:
    """Owns a classroom's RTCPeerConnection and its two packet tracks.

    Each sender gets a :class:`PassthroughEncoder` before it starts, and its keyframe
    requests (PLI/FIR, which aiortc turns into ``sender._send_keyframe()``) go to the
    rendition, which rate-limits them.
    """

    def __init__(self, lesson: RelayLesson, peer_id: str, pc: RTCPeerConnection) -> None:
        self.lesson = lesson
        self.peer_id = peer_id
        self.pc = pc
        self.created = time.monotonic()
        self.video: PacketTrack | None = None
        self.audio: PacketTrack | None = None
        self._encoders: list[PassthroughEncoder] = []
        self.keyframe_requests = 0
        self._closed = False
        self.replaced = False
        self._attached = False

    def add_track(self, sender: RTCRtpSender, track: PacketTrack) -> None:
        encoder = PassthroughEncoder(track.kind)
        sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]
        self._encoders.append(encoder)
        if track.kind == "video":
            self.video = track
            sender._send_keyframe = self._on_keyframe_request  # type: ignore[method-assign]
        else:
            self.audio = track

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self.lesson.rendition.request_keyframe("pli")

    def _need_keyframe(self, reason: str) -> None:
        self.lesson.rendition.request_keyframe(reason)

    def make_video_track(self) -> PacketTrack:
        return PacketTrack("video", self.lesson.config.video_queue_frames, self._need_keyframe)

    def make_audio_track(self) -> PacketTrack:
        return PacketTrack("audio", self.lesson.config.audio_queue_packets)

    def attach(self) -> None:
        """Start receiving the lesson's packets (video from the next keyframe)."""
        if self._attached or self._closed:
            return
        self._attached = True
        if self.video is not None:
            self.lesson.rendition.attach(self.video)
        if self.audio is not None:
            self.lesson.audio.attach(self.audio)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for track in (self.video, self.audio):
            if track is not None:
                self.lesson.rendition.detach(track)
                self.lesson.audio.detach(track)
                track.stop()
        await self.pc.close()
        self._encoders.clear()

    def stats(self) -> dict:
        stats: dict = {"peer_id": self.peer_id, "state": self.pc.connectionState,
                       "keyframe_requests": self.keyframe_requests}
        for track in (self.video, self.audio):
            if track is not None:
                stats[track.kind] = {
                    "sent": track.sent, "queued": track.queued, "dropped": track.dropped,
                    "overflows": track.overflows,
                    "wait_ms_avg": round(1000 * track.wait_seconds / track.sent, 3)
                    if track.sent else None,
                    "wait_ms_max": round(1000 * track.wait_max, 3)}
        remb = [e.remb_bitrate for e in self._encoders if e.remb_bitrate is not None]
        stats["remb_bitrate"] = remb[0] if remb else None
        return stats
