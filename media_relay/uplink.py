"""A classroom's camera and microphone into the relay: forwarded as received, never decoded
unless the classroom is on stage.

Like :class:`~.publisher.Publisher`, the encoded frames are taken before aiortc's decoder
(``decode=False``): 30 uplinks cost no decoder work. Each VP8 frame is packetized once
(shared by every grid slot showing the uplink) and handed to those slots and, on stage, to
the stage's VideoSource; each Opus frame goes to the stage audio when on stage and not
muted. The measured rate is checked against the cap every ``_CHECK`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame

from . import metrics, webrtc_private
from .tapped import TappedPeer

if TYPE_CHECKING:
    from .config import RelayConfig

logger = logging.getLogger(__name__)

OVER_CAP = "uplink_over_cap"
_CHECK = 0.5
"""Seconds between rate checks."""
_WINDOW = 1.0
"""Seconds the measured rate is averaged over."""


class UplinkViewer(Protocol):
    """Where an uplink's VP8 frames go, packetized once (a grid slot showing it)."""

    index: int

    def assign(self, uplink: UplinkOutputs | None) -> None: ...

    def forward(self, uplink: UplinkOutputs, data: bytes, timestamp: int, keyframe: bool,
                payloads: list[bytes], ingress: float) -> None: ...

    def resync(self) -> None: ...


class UplinkStage(Protocol):
    """The lesson's stage, while this uplink is on it (decodes its video, fans its audio)."""

    def offer_video(self, uplink: UplinkOutputs, codec_name: str, data: bytes, timestamp: int,
                    keyframe: bool, now: float) -> None: ...

    def offer_audio(self, uplink: UplinkOutputs, data: bytes, timestamp: int,
                    now: float) -> None: ...

    def resync(self) -> None: ...


class UplinkOutputs:
    """Where a classroom's uplink media goes, whichever node it reached: the grid slots
    showing it (VP8 packetized once for all of them), the stage while it is on it, and the
    cascade link to the lesson's origin (``upstream``) when the uplink is on an edge.

    :class:`Uplink` (a local connection) and the origin's stand-in for an edge's uplink
    (media_relay/cascade_uplinks.py) share it, so a grid or the stage cannot tell them apart.
    """

    peer_id: str
    source: int
    muted: bool = False
    blocked: bool = False

    def _init_outputs(self) -> None:
        self.slots: list[UplinkViewer] = []
        """Grid slots showing this uplink (its VP8 frames go there, packetized once)."""
        self.stage: UplinkStage | None = None
        """The lesson's stage while this uplink is on it."""
        self.upstream: UplinkStage | None = None
        """The cascade link carrying it to the lesson's origin (an edge's uplink)."""
        self.size: tuple[int, int] | None = None
        """From the last VP8 keyframe."""
        self._picture_id = 0

    def request_keyframe(self) -> None:
        raise NotImplementedError

    def fan_video(self, codec_name: str, data: bytes, timestamp: int, now: float) -> bool:
        """One encoded frame to the stage, the grid slots and upstream; True: a keyframe."""
        keyframe = bool(data) and not data[0] & 1
        if keyframe:
            self.size = vp8_keyframe_size(data) or self.size
        if self.blocked or not data:
            return keyframe
        stage = self.stage
        if stage is not None:
            stage.offer_video(self, codec_name, data, timestamp, keyframe, now)
        if self.slots:
            payloads = webrtc_private.vp8_payloads(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) % (1 << 15)
            for slot in self.slots:
                slot.forward(self, data, timestamp, keyframe, payloads, now)
        upstream = self.upstream
        if upstream is not None:
            upstream.offer_video(self, codec_name, data, timestamp, keyframe, now)
        return keyframe

    def fan_audio(self, data: bytes, timestamp: int, now: float) -> None:
        """One Opus packet to the stage (on stage, not muted) and upstream (not muted)."""
        if self.muted:
            return
        stage = self.stage
        if stage is not None:
            stage.offer_audio(self, data, timestamp, now)
        upstream = self.upstream
        if upstream is not None:
            upstream.offer_audio(self, data, timestamp, now)


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


class Uplink(UplinkOutputs, TappedPeer):
    """Owns a classroom's sendonly RTCPeerConnection (answerer) and taps its receivers.

    ``on_active(uplink, bool)`` reports media starting and stopping (``media_timeout``);
    ``on_violation(uplink, code)`` reports an uplink over its cap (once per episode);
    ``on_closed(uplink)`` that it closes. Its viewers (``slots``) and the stage add and
    remove themselves; it knows them only by what it hands them.
    """

    watch_name = "uplink"

    def __init__(self, peer_id: str, pc: RTCPeerConnection, source: int, *,
                 config: RelayConfig, school: str | None, muted: bool,
                 on_active: Callable[[Uplink, bool], None],
                 on_violation: Callable[[Uplink, str], None],
                 on_closed: Callable[[Uplink], None] | None = None) -> None:
        super().__init__(peer_id, pc, source, config=config, on_active=on_active,
                         gauge=metrics.UPLINKS, on_closed=on_closed)
        self.school = school
        self.muted = muted
        self._on_violation = on_violation
        self._init_outputs()
        self.blocked = False
        """Over the cap for too long: video not forwarded until back under it."""
        self._over_since: float | None = None
        self._video_receiver: RTCRtpReceiver | None = None
        self._rates: deque[tuple[float, int]] = deque()
        self.frames_in = 0
        self.keyframes_in = 0
        self.audio_packets_in = 0
        self.bitrate_in = 0
        self.violations = 0
        self.has_video = False
        self.has_audio = False

    def install(self) -> None:
        """Tap the receivers; call after setRemoteDescription, before the answer is applied."""
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if receiver.track is None:
                continue
            if transceiver.kind == "video":
                self._video_receiver = receiver
                self.has_video = True
                self._tap(receiver, self._on_video)
            elif transceiver.kind == "audio":
                self.has_audio = True
                self._tap(receiver, self._on_audio)
        self._start_watch()

    # ---- taps (event loop, inside aiortc's receive path) --------------------------------
    def _on_video(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        data = frame.data
        self.frames_in += 1
        self._media(now, len(data))
        if self.fan_video(codec.name, data, frame.timestamp, now):
            self.keyframes_in += 1

    def _on_audio(self, codec: Any, frame: JitterFrame) -> None:
        now = time.monotonic()
        self.audio_packets_in += 1
        self._media(now, len(frame.data))
        self.fan_audio(frame.data, frame.timestamp, now)

    def request_keyframe(self) -> None:
        """A PLI to the classroom with the receiver's next RTCP feedback."""
        self._pli(self._video_receiver)

    # ---- rate enforcement -------------------------------------------------------------
    def check_rate(self, now: float) -> None:
        """Measure the rate over the last second; report and block an uplink over
        ``uplink_over_factor`` x its cap for ``uplink_over_seconds``; unblock under the cap."""
        config = self.config
        rates = self._rates
        rates.append((now, self.bytes_in))
        while len(rates) > 2 and now - rates[1][0] >= _WINDOW:
            rates.popleft()
        first_at, first_bytes = rates[0]
        if now - first_at > 0:
            self.bitrate_in = int(8 * (self.bytes_in - first_bytes) / (now - first_at))
        cap = config.uplink_max_bitrate
        if self.bitrate_in > config.uplink_over_factor * cap:
            if self._over_since is None:
                self._over_since = now
            elif not self.blocked and now - self._over_since >= config.uplink_over_seconds:
                self.blocked = True
                self.violations += 1
                metrics.UPLINK_VIOLATIONS.labels(code=OVER_CAP).inc()
                logger.info("uplink %s over its cap: %d bit/s", self.peer_id, self.bitrate_in)
                self._on_violation(self, OVER_CAP)
        elif self.bitrate_in <= cap:
            self._over_since = None
            if self.blocked:
                self.blocked = False
                # frames were dropped: its viewers start again at the next keyframe
                for slot in self.slots:
                    slot.resync()
                if self.stage is not None:
                    self.stage.resync()
                self.request_keyframe()

    def _watch_interval(self) -> float:
        return _CHECK

    def _check(self, now: float) -> None:
        self.check_rate(now)

    def _release(self) -> None:
        self._video_receiver = None

    def stats(self) -> dict:
        slot = next((s.index for s in self.slots), None)
        return {
            "peer_id": self.peer_id,
            "state": self.pc.connectionState,
            "active": self.active,
            "school": self.school,
            "bitrate_in": self.bitrate_in,
            "frames_in": self.frames_in,
            "keyframes_in": self.keyframes_in,
            "audio_packets_in": self.audio_packets_in,
            "bytes_in": self.bytes_in,
            "muted": self.muted,
            "blocked": self.blocked,
            "violations": self.violations,
            "keyframe_requests": self.keyframe_requests,
            "size": list(self.size) if self.size else None,
            "on_stage": self.stage is not None,
            "slot": slot,
        }
