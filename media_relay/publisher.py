"""The teacher's connection into the relay: encoded frames are tapped before aiortc's decoder."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame

from . import metrics
from .ingress import TapQueue, install_tap

if TYPE_CHECKING:
    from .lesson import RelayLesson

logger = logging.getLogger(__name__)


class Publisher:
    """Owns the teacher's RTCPeerConnection (answerer) and taps its receivers.

    Nothing is decoded by aiortc: the encoded frames are taken before its decoder.
    - video: each frame goes to the lesson's rendition (its media thread decodes and
      encodes); a decode error there sends a PLI to the teacher through the receiver.
    - audio: the Opus frames are forwarded as received to every subscriber.
    - a second video m-line is the teacher's share (screen/slides): its frames go to the
      lesson's share feed (a VideoSource and renditions of its own).
    ``on_active(publisher, bool)`` reports media starting and stopping (``media_timeout``).
    """

    def __init__(self, lesson: RelayLesson, peer_id: str, pc: RTCPeerConnection,
                 source: int, on_active: Callable[[Publisher, bool], None]) -> None:
        self.lesson = lesson
        self.peer_id = peer_id
        self.pc = pc
        self.source = source
        self._on_active = on_active
        self._taps: list[TapQueue] = []
        self._video_receiver: RTCRtpReceiver | None = None
        self._share_receiver: RTCRtpReceiver | None = None
        self.has_share = False
        self.share_frames_in = 0
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self.replaced = False
        """Replaced by the same peer id: its state changes are not reported."""
        self.active = False
        self.last_media = 0.0
        self.video_frames_in = 0
        self.audio_packets_in = 0
        self.keyframe_requests = 0
        self.bytes_in = 0
        metrics.PUBLISHERS.inc()

    def install(self) -> None:
        """Tap the receivers; call after setRemoteDescription, before the answer is applied."""
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if receiver.track is None:
                continue
            if transceiver.kind == "video" and self._video_receiver is None:
                self._video_receiver = receiver
                self._taps.append(install_tap(receiver, self._on_video, decode=False))
            elif transceiver.kind == "video":
                self._share_receiver = receiver
                self.has_share = True
                self._taps.append(install_tap(receiver, self._on_share, decode=False))
            elif transceiver.kind == "audio":
                self._taps.append(install_tap(receiver, self._on_audio, decode=False))
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._watch(), name=f"publisher-watch-{self.peer_id}"))

    # ---- taps (event loop thread, inside aiortc's receive path) ------------------------
    def _media(self, now: float, size: int) -> None:
        self.last_media = now
        self.bytes_in += size
        if not self.active:
            self.active = True
            self._on_active(self, True)

    def _on_video(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.video_frames_in += 1
        self._media(now, len(frame.data))
        self.lesson.source.offer_encoded(codec.name, frame.data, now, self.source,
                                            frame.timestamp, self.request_keyframe)

    def _on_share(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.share_frames_in += 1
        self._media(now, len(frame.data))
        if self.lesson.share_active:
            self.lesson.share.source.offer_encoded(codec.name, frame.data, now, self.source,
                                                   frame.timestamp, self.request_share_keyframe)

    def _on_audio(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.audio_packets_in += 1
        self._media(now, len(frame.data))
        self.lesson.audio.forward(self.source, frame.data, frame.timestamp, now)

    def request_keyframe(self) -> None:
        """Make the receiver send a PLI to the teacher with its next RTCP feedback."""
        receiver = self._video_receiver
        if receiver is not None and not self._closed:
            self.keyframe_requests += 1
            receiver._RTCRtpReceiver__decoder_error.set()  # type: ignore[attr-defined]

    def request_share_keyframe(self) -> None:
        """A PLI to the teacher on the share's m-line."""
        receiver = self._share_receiver
        if receiver is not None and not self._closed:
            self.keyframe_requests += 1
            receiver._RTCRtpReceiver__decoder_error.set()  # type: ignore[attr-defined]

    # ---- tasks -------------------------------------------------------------------------
    async def _watch(self) -> None:
        timeout = self.lesson.config.media_timeout
        while True:
            await asyncio.sleep(min(0.5, timeout / 2))
            if self.active and time.monotonic() - self.last_media > timeout:
                self.active = False
                self._on_active(self, False)

    # ---- lifetime ----------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        metrics.PUBLISHERS.dec()
        for tap in self._taps:
            tap.detach()
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        self._video_receiver = self._share_receiver = None
        if self.active:
            self.active = False
            self._on_active(self, False)

    def stats(self) -> dict:
        return {
            "peer_id": self.peer_id,
            "state": self.pc.connectionState,
            "active": self.active,
            "video_frames_in": self.video_frames_in,
            "share_frames_in": self.share_frames_in,
            "audio_packets_in": self.audio_packets_in,
            "keyframe_requests": self.keyframe_requests,
            "bytes_in": self.bytes_in,
        }
