"""Taps on aiortc's RTCRtpReceiver: encoded frames are seen before the decoder.

aiortc assembles RTP packets into encoded frames (jitter buffer) and puts
``(codec, encoded_frame)`` into a ``queue.Queue`` read by a decoder thread. That queue is
created in ``RTCRtpReceiver.__init__`` and handed to the thread only in ``receive()``,
which runs after the remote description is applied, so it can be replaced in between.
``TapQueue.put`` runs in the event loop thread (inside ``_handle_rtp_packet``): the tap
sees every encoded frame, and only what should be decoded reaches the decoder.

The receivers' jitter buffers are replaced too: aiortc releases a frame only when the
next frame's first packet arrives (audio even holds 4 frames back). A relay does not need
that hold, the browser has its own jitter buffer: frames are released as soon as they are
complete (video: the marker bit; audio: every packet), in order.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint32_gt

from . import capture_clock
from . import webrtc_private as private
from .webrtc_private import JitterBufferBase, packet_data

logger = logging.getLogger(__name__)

Tap = Callable[[Any, JitterFrame], None]


class RtpFrame(JitterFrame):
    """A released frame that keeps its RTP timestamp as sent: aiortc rewrites ``timestamp``
    (its TimestampMapper: from 0) before the decoder queue; sender reports use the sent one."""

    def __init__(self, data: bytes, timestamp: int) -> None:
        super().__init__(data, timestamp)
        self.rtp_timestamp = timestamp


class TapQueue(queue.Queue):
    """The decoder's input queue, with a tap on ``put``.

    ``decode=False`` keeps everything from the decoder (audio is forwarded as received);
    the stop sentinel ``None`` always passes so the decoder thread ends.
    """

    def __init__(self, tap: Tap, decode: bool,
                 clock: capture_clock.SenderClock | None = None) -> None:
        super().__init__()
        self._tap: Tap | None = tap
        self._decode = decode
        self.clock = clock
        """The receiver's sender reports: the frame's capture time (capture_clock.py)."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        tap = self._tap
        if tap is not None:
            clock = self.clock
            if clock is not None:  # read by what the tap calls (VideoSource.offer_encoded)
                clock.clock_rate = getattr(item[0], "clockRate", None) or clock.clock_rate
                frame = item[1]
                capture_clock.delivering = clock.capture_of(
                    getattr(frame, "rtp_timestamp", frame.timestamp))
            try:
                tap(item[0], item[1])
            except Exception:
                logger.exception("ingress tap failed")
            finally:
                capture_clock.delivering = None
        if self._decode:
            super().put(item, block, timeout)

    def detach(self) -> None:
        self._tap = None


class VideoFrameBuffer(JitterBufferBase):
    """aiortc's video jitter buffer, but a frame is released when its marker packet arrives."""

    def __init__(self) -> None:
        super().__init__(capacity=512, is_video=True)

    def release_frame(self, sequence_number: int) -> JitterFrame | None:
        packets: list[RtpPacket] = []
        timestamp = None
        slots, origin, capacity = self.slots, self.origin or 0, self.capacity
        for count in range(capacity):
            packet = slots[(origin + count) % capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # the previous frame's marker was lost: it is complete all the same
                self.remove(count)
                return RtpFrame(b"".join(map(packet_data, packets)), timestamp)
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return RtpFrame(b"".join(map(packet_data, packets)), timestamp)
        return None


class AudioFrameBuffer:
    """Every audio RTP packet is a frame: release it at once; drop late and repeated ones.

    (aiortc's timestamp mapper takes any decrease for a wrap-around, so out-of-order
    packets must not reach it.)
    """

    capacity = 16

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._last is not None and not uint32_gt(packet.timestamp, self._last):
            return False, None
        self._last = packet.timestamp
        return False, RtpFrame(packet_data(packet), packet.timestamp)


def install_tap(receiver: RTCRtpReceiver, tap: Tap, *, decode: bool) -> TapQueue:
    """Put a tap in front of ``receiver``'s decoder; must run before ``receive()``."""
    if private.receiver_started(receiver):
        raise RuntimeError("receiver already started: too late to tap it")
    kind = private.receiver_kind(receiver)
    clock = capture_clock.SenderClock(90_000 if kind == "video" else 48_000)
    reports = capture_clock.SenderReports(clock)  # the frames' capture times
    reports.original = private.replace_receiver_rtcp_handler(receiver, reports)
    tap_queue = TapQueue(tap, decode, clock)
    private.replace_decoder_queue(receiver, tap_queue)
    buffer = VideoFrameBuffer() if kind == "video" else AudioFrameBuffer()
    private.replace_jitter_buffer(receiver, buffer)
    return tap_queue

