"""The teacher's connection into the relay: encoded frames are tapped before aiortc's decoder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame

from . import metrics
from .tapped import TappedPeer

if TYPE_CHECKING:
    from .config import RelayConfig
    from .lesson_media import LessonMedia

logger = logging.getLogger(__name__)


class Publisher(TappedPeer):
    """Owns the teacher's RTCPeerConnection (answerer) and taps its receivers.

    Nothing is decoded by aiortc: the encoded frames are taken before its decoder.
    It writes into the lesson's feeds (``media``), never into the lesson:
    - video: each frame goes to the camera feed's source (its media thread decodes and
      encodes); a decode error there sends a PLI to the teacher through the receiver.
    - audio: the Opus frames are forwarded as received to every subscriber.
    - a second video m-line is the teacher's share (screen/slides): its frames go to the
      share feed (a VideoSource and renditions of its own) while ``media.share_active``.
    ``on_active(publisher, bool)`` reports media starting and stopping (``media_timeout``);
    ``on_closed(publisher)`` that it closes.
    """

    watch_name = "publisher"

    def __init__(self, peer_id: str, pc: RTCPeerConnection, source: int, *,
                 config: RelayConfig, media: LessonMedia,
                 on_active: Callable[[Publisher, bool], None],
                 on_closed: Callable[[Publisher], None] | None = None) -> None:
        super().__init__(peer_id, pc, source, config=config, on_active=on_active,
                         gauge=metrics.PUBLISHERS, on_closed=on_closed)
        self.media = media
        self._video_receiver: RTCRtpReceiver | None = None
        self._share_receiver: RTCRtpReceiver | None = None
        self.has_share = False
        self.share_frames_in = 0
        self.video_frames_in = 0
        self.audio_packets_in = 0

    def install(self) -> None:
        """Tap the receivers; call after setRemoteDescription, before the answer is applied."""
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if receiver.track is None:
                continue
            if transceiver.kind == "video" and self._video_receiver is None:
                self._video_receiver = receiver
                self._tap(receiver, self._on_video)
            elif transceiver.kind == "video":
                self._share_receiver = receiver
                self.has_share = True
                self._tap(receiver, self._on_share)
            elif transceiver.kind == "audio":
                self._tap(receiver, self._on_audio)
        self._start_watch()

    # ---- taps (event loop thread, inside aiortc's receive path) ------------------------
    def _on_video(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.video_frames_in += 1
        self._media(now, len(frame.data))
        self.media.camera.source.offer_encoded(codec.name, frame.data, now, self.source,
                                               frame.timestamp, self.request_keyframe)

    def _on_share(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.share_frames_in += 1
        self._media(now, len(frame.data))
        if self.media.share_active:
            self.media.share.source.offer_encoded(codec.name, frame.data, now, self.source,
                                                  frame.timestamp, self.request_share_keyframe)

    def _on_audio(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.audio_packets_in += 1
        self._media(now, len(frame.data))
        self.media.audio.forward(self.source, frame.data, frame.timestamp, now)

    def request_keyframe(self) -> None:
        """A PLI to the teacher on the camera's m-line."""
        self._pli(self._video_receiver)

    def request_share_keyframe(self) -> None:
        """A PLI to the teacher on the share's m-line."""
        self._pli(self._share_receiver)

    def _release(self) -> None:
        self._video_receiver = self._share_receiver = None

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
