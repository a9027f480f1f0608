"""A player's jitter buffer for aiortc receivers: give up on a lost packet after a deadline.

aiortc's :class:`~aiortc.jitterbuffer.JitterBuffer` hands a frame to the decoder only when
every packet from its origin on is there. A packet that NACK/RTX does not bring back blocks
everything behind it until the buffer is full (512 packets for video, ~30 s at 150 kbit/s;
16 for audio, 320 ms of silence), and only then sends a PLI. Measured on a 400 kbit/s + 3 %
loss link (tests/integration/test_real_link.py): the relay had sent 13 keyframes of the new
tier, the receiver held 412 packets behind one hole and decoded nothing.

A browser does what :class:`PlayoutBuffer` does instead:
- audio: a hole is skipped as soon as a later packet is there (``audio_wait`` 0: Opus frames
  stand alone and aiortc does not NACK audio, so waiting only adds delay; a reordered packet
  that comes after is dropped as late), so a loss costs a short glitch, not a
  third of a second; a backlog above a few frames is trimmed (one frame out per packet in
  would otherwise keep every stall's delay);
- video: a hole older than ``video_wait`` (time for NACK/RTX to bring it back) drops the
  frames that depend on it: playback resumes at the next keyframe held, or the buffer asks
  for one (PLI, repeated every ``pli_interval`` while it waits) and discards delta frames
  until it comes. A keyframe already held after the hole ends the wait at once (after a
  tier switch the old tier's lost packets do not matter).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

from media_relay import webrtc_private
from media_relay.webrtc_private import JitterBufferBase

KeyframeTest = Callable[[RtpPacket], bool]


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (S=1, PID=0, frame tag bit 0 clear)."""
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return False
    return bool(descriptor.partition_start and descriptor.partition_id == 0 and rest
                and not rest[0] & 1)


def h264_keyframe_start(payload: bytes) -> bool:
    """True for a packet that starts an IDR picture or carries SPS (single, STAP-A, FU-A)."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24 and len(payload) > 3:  # STAP-A: first aggregated unit
        return payload[3] & 0x1F in (5, 7)
    if nal == 28 and len(payload) > 1:  # FU-A: start bit and type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    return False


class PlayoutBuffer(JitterBufferBase):
    """aiortc's jitter buffer with a deadline on holes (see the module docstring)."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False, *,
                 wait: float, keyframe_start: KeyframeTest | None = None,
                 pli_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self.wait = wait
        self._keyframe_start = keyframe_start
        self._pli_interval = pli_interval
        self._clock = clock
        self._hole: int | None = None
        self._newest: int | None = None
        self._keyframes: set[int] = set()
        self._hole_since = 0.0
        self._waiting_keyframe = False
        self._last_pli = 0.0
        # stats
        self.max_depth = prefetch + 3
        """Audio: frames held beyond this are trimmed (see _trim_audio)."""
        self.frames_trimmed = 0
        self.holes_skipped = 0
        self.packets_discarded = 0
        self.plis = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        now = self._clock()
        pli = False
        if self._waiting_keyframe:
            if not self._is_keyframe_start(packet):
                self.packets_discarded += 1
                if now - self._last_pli >= self._pli_interval:
                    self._last_pli = now
                    self.plis += 1
                    return True, None
                return False, None
            self._waiting_keyframe = False  # empty, origin None: this packet is the origin
        newest = self._newest
        if newest is None or self.origin is None or uint16_gt(packet.sequence_number, newest):
            self._newest = packet.sequence_number
        if self.is_video and self._keyframe_start is not None and self._keyframe_start(packet):
            self._keyframes.add(packet.sequence_number)
        pli, frame = super().add(packet)
        if not self.is_video and frame is not None and self.origin is not None:
            self._trim_audio()
        if frame is not None or self.origin is None:
            self._hole = None
            return pli, frame
        hole = self._first_hole()
        if hole is None:
            self._hole = None
            return pli, frame
        if hole != self._hole:
            self._hole, self._hole_since = hole, now
        start = self._keyframe_after(hole) if self.is_video else None
        if start is None and (now - self._hole_since < self.wait
                              or (self.wait > 0 and now == self._hole_since)):
            return pli, frame  # NACK/RTX may still bring it (a keyframe after it: no need)
        self._hole = None
        self.holes_skipped += 1
        if not self.is_video:
            self._close_gap(hole)
            return pli, self.release_frame(packet.sequence_number)
        if start is not None:
            self._skip_to(start)
            return pli, self.release_frame(packet.sequence_number)
        # no keyframe held: drop everything and ask for one
        self.packets_discarded += self._held()
        self.remove(self.capacity)
        self.origin = None
        self._waiting_keyframe = True
        self._last_pli = now
        self.plis += 1
        return True, None

    def _is_keyframe_start(self, packet: RtpPacket) -> bool:
        return True if self._keyframe_start is None else self._keyframe_start(packet)

    def _held(self) -> int:
        return sum(1 for p in self.slots if p is not None)

    def _first_hole(self) -> int | None:
        """The first missing sequence number with a packet held after it, or None."""
        origin, newest = self.origin, self._newest
        if origin is None or newest is None or not uint16_gt(newest, origin):
            return None
        seq = origin
        while seq != newest:
            if self.slots[seq % self.capacity] is None:
                return seq
            seq = uint16_add(seq, 1)
        return None

    def _keyframe_after(self, hole: int) -> int | None:
        """The nearest keyframe start held after ``hole`` (tracked as packets arrive)."""
        best = None
        for seq in list(self._keyframes):
            packet = self.slots[seq % self.capacity]
            if packet is None or packet.sequence_number != seq:
                self._keyframes.discard(seq)  # released or dropped
            elif uint16_gt(seq, hole) and (best is None or uint16_gt(best, seq)):
                best = seq
        return best

    def _trim_audio(self) -> None:
        """Audio: one frame out per packet in means a backlog never drains by itself (each
        skipped hole would add its wait to the delay for good, until aiortc's overflow
        drops a run of packets). Drop the oldest frame while more than ``max_depth`` wait:
        20 ms skipped now and then, as a browser's buffer accelerates."""
        while self._held() > self.max_depth:
            self.remove(1)
            self.packets_discarded += 1
            self.frames_trimmed += 1

    def _close_gap(self, hole: int) -> None:
        """Audio: move the packets before the run of missing packets at ``hole`` on by the
        run's length, so nothing received is lost and what follows comes out at once."""
        assert self.origin is not None and self._newest is not None
        run = 1
        while (uint16_gt(self._newest, uint16_add(hole, run))
               and self.slots[uint16_add(hole, run) % self.capacity] is None):
            run += 1
        seq = uint16_add(hole, run - 1)
        while seq != uint16_add(self.origin, run - 1):
            source = uint16_add(seq, -run)
            self.slots[seq % self.capacity] = self.slots[source % self.capacity]
            self.slots[source % self.capacity] = None
            seq = uint16_add(seq, -1)
        self.origin = uint16_add(self.origin, run)

    def _skip_to(self, seq: int) -> None:
        assert self.origin is not None
        count = uint16_add(seq, -self.origin)
        held_before = sum(1 for i in range(count)
                          if self.slots[uint16_add(self.origin, i) % self.capacity])
        self.packets_discarded += held_before
        self.remove(count)


def keyframe_test(receiver: RTCRtpReceiver) -> KeyframeTest:
    """A keyframe-start test for the codec of each packet (codecs known after negotiation)."""
    codecs = webrtc_private.receiver_codecs(receiver)  # filled in place by receive()

    def test(packet: RtpPacket) -> bool:
        codec = codecs.get(packet.payload_type)
        name = codec.name if codec is not None else ""
        if name == "VP8":
            return vp8_keyframe_start(packet.payload)
        if name == "H264":
            return h264_keyframe_start(packet.payload)
        return True  # unknown: any packet may start again (the decoder will ask if not)

    return test


def install(receiver: RTCRtpReceiver, kind: str, *, audio_wait: float = 0.0,
            video_wait: float = 0.6) -> PlayoutBuffer:
    """Replace ``receiver``'s jitter buffer (before media arrives) with a PlayoutBuffer."""
    if kind == "video":
        buffer = PlayoutBuffer(512, is_video=True, wait=video_wait,
                               keyframe_start=keyframe_test(receiver))
    else:
        buffer = PlayoutBuffer(16, prefetch=4, wait=audio_wait)
    webrtc_private.replace_jitter_buffer(receiver, buffer)
    return buffer
