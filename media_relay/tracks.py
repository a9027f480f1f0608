"""What a subscriber's RTCRtpSender reads: shared packets, and an encoder that only passes them.

``PacketTrack.recv()`` returns the ``av.Packet`` the rendition (or the audio fan-out)
shared with every subscriber; ``PassthroughEncoder.pack()`` returns the payloads that were
packetized once for everyone, so a subscriber costs RTP headers, SRTP and ``sendto`` only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import av
from aiortc import MediaStreamTrack
from aiortc.codecs.base import Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError

from . import metrics
from .packets import PacketMeta

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """What a rendition or the audio fan-out hands its shared packets to."""

    def push(self, packet: av.Packet) -> None: ...


class KindSink(Sink, Protocol):
    """A sink of one of a lesson's media, attached from outside (``Relay.attach_sink``:
    the recorder): ``kind`` (``"video"``/``"audio"``) says which."""

    kind: str


_failed_sinks: weakref.WeakSet = weakref.WeakSet()


def add_sink(sinks: list[Sink], sink: Sink) -> None:
    """Attach ``sink``: a cascade link (``relay_first``) goes before the local
    subscribers, so an edge's classrooms do not wait for this node's fan-out."""
    if getattr(sink, "relay_first", False):
        sinks.insert(0, sink)
    else:
        sinks.append(sink)


def fan_out(sinks: list[Sink], packet: av.Packet) -> None:
    """Hand ``packet`` to every sink now; one failing sink does not stop the others.

    A sink's failure is logged once (its connection is usually going away).
    """
    for sink in sinks:
        try:
            sink.push(packet)
        except Exception:
            if sink not in _failed_sinks:
                _failed_sinks.add(sink)
                logger.exception("fan-out to %r failed", sink)


class PacketTrack(MediaStreamTrack):
    """A bounded queue of shared packets for one subscriber and one kind.

    Video starts at a keyframe; when the queue overflows it is flushed and waits for the
    next keyframe (``on_need_keyframe`` asks the rendition for one): a VP8 stream with a
    hole cannot be decoded until then. Audio drops its oldest packet on overflow.
    """

    def __init__(self, kind: str, max_len: int,
                 on_need_keyframe: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._max_len = max_len
        self._queue: deque[av.Packet] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._video = kind == "video"
        self._need_keyframe = self._video
        self._on_need_keyframe = on_need_keyframe
        self._latency = metrics.LATENCY_VIDEO if self._video else metrics.LATENCY_AUDIO
        self._dropped_metric = metrics.DROPPED_VIDEO if self._video else metrics.DROPPED_AUDIO
        self._live = True
        self.pushed = 0
        self.sent = 0
        self.dropped = 0
        self.overflows = 0
        self.wait_seconds = 0.0
        """Sum of fan-out -> hand-off to the sender (time spent queued for this subscriber)."""
        self.wait_max = 0.0

    # producer side (the rendition / audio fan-out), event loop thread
    def push(self, packet: av.Packet) -> None:
        if not self._live:
            return
        self.pushed += 1
        queue = self._queue
        if self._need_keyframe:
            if not packet.opaque.keyframe:
                self.dropped += 1
                self._dropped_metric.inc()
                return
            self._need_keyframe = False
        if len(queue) >= self._max_len:
            self.overflows += 1
            if self._video:
                lost = len(queue)
                queue.clear()
                if not packet.opaque.keyframe:
                    lost += 1
                    self._need_keyframe = True
                    if self._on_need_keyframe is not None:
                        self._on_need_keyframe("overflow")
                self.dropped += lost
                self._dropped_metric.inc(lost)
                if self._need_keyframe:
                    return
            else:
                queue.popleft()
                self.dropped += 1
                self._dropped_metric.inc()
        queue.append(packet)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def restart(self) -> None:
        """Drop what is queued and start again at the next keyframe (new source)."""
        if self._video:
            self._queue.clear()
            self._need_keyframe = True

    @property
    def queued(self) -> int:
        return len(self._queue)

    # consumer side (the RTCRtpSender)
    async def recv(self) -> av.Packet:
        queue = self._queue
        while not queue:
            if not self._live:
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        packet = queue.popleft()
        meta = packet.opaque
        now = time.monotonic()
        self._latency.observe(now - meta.ingress)
        wait = now - meta.fanout
        self.wait_seconds += wait
        self.wait_max = max(self.wait_max, wait)
        self.sent += 1
        return packet

    def stop(self) -> None:
        self._live = False
        self._queue.clear()
        self._on_need_keyframe = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        super().stop()


class PassthroughEncoder(Encoder):
    """Installed on a subscriber's RTCRtpSender in place of its own encoder.

    ``pack()`` returns the rendition's pre-packetized payloads and RTP timestamp; a packet
    without our metadata falls back to aiortc's packetizer. The sender sets
    ``target_bitrate`` when the receiver sends REMB: it is recorded for rate control.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._fallback: Any = None
        self.remb_bitrate: int | None = None
        self.remb_count = 0

    def _real(self) -> Any:
        if self._fallback is None:
            self._fallback = Vp8Encoder() if self.kind == "video" else OpusEncoder()
        return self._fallback

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        return self._real().encode(frame, force_keyframe)

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        meta = packet.opaque
        if isinstance(meta, PacketMeta):
            return meta.payloads, meta.rtp_timestamp
        return self._real().pack(packet)

    @property
    def target_bitrate(self) -> int | None:
        return self.remb_bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self.remb_bitrate = bitrate
        self.remb_count += 1
