"""When was this frame captured? The teacher's capture time of what a classroom plays.

Glass-to-glass latency (docs/latency.md) needs, for a frame a classroom reports as played
(its output RTP timestamp), the teacher's capture time. Three small pieces:

- :class:`SenderClock` keeps the newest RTCP sender report of one of the teacher's
  receivers: a browser's SR maps an RTP timestamp to the NTP wall-clock time of that
  sampling instant (RFC 3550 6.4.1; Chromium's RTP timestamps are capture times), so any
  frame's capture time follows from its RTP timestamp. The times are in the *teacher's*
  clock (its machine's wall clock); signaling/glass.py moves them to the server's clock
  with the teacher page's offset (ping/pong).
- :data:`delivering` is the capture time of the frame the ingress tap is handing on *now*
  (set by ``ingress.TapQueue.put`` around its tap call, in the event loop thread), so the
  code the tap calls (``VideoSource.offer_encoded``) reads it without a new parameter.
- :class:`CaptureMap`, a small ring per output timeline (the camera's ``VideoSource``:
  every tier and codec shares its timeline): output RTP timestamp (before a subscriber's
  random origin) -> capture time. :func:`capture_for` turns a classroom's
  ``(ssrc, rtpTimestamp)`` into the capture time through that subscriber's stream origin.

No private aiortc name here: the receiver's RTCP handler (aiortc keeps only an SR's middle
32 bits, for LSR, and no RTP timestamp) is replaced through the fence
(``webrtc_private.replace_receiver_rtcp_handler``) by ``ingress.install_tap``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.rtp import RtcpSrPacket

MASK = 0xFFFFFFFF
NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01."""
RING_SIZE = 512
"""Output timestamps kept per timeline: 17 s of 30 fps video, 10 s of 20 ms audio."""
MAX_REPORT_AGE = 30.0
"""Seconds an SR is used for at most (Chromium sends one every 1-5 s)."""
MAX_EXTRAPOLATION = 30.0
"""Seconds of RTP time a frame may be from its SR at most (else: a new stream, unknown)."""

delivering: float | None = None
"""Capture time (sender's clock, Unix seconds) of the frame the ingress tap is delivering
now; None outside a tap call or before the first sender report."""


def ntp_to_unix(ntp: int) -> float:
    """A 64-bit NTP timestamp as Unix seconds (era 0; valid until 2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & MASK) / 4294967296.0


def rtp_diff(a: int, b: int) -> int:
    """``a - b`` between two 32-bit RTP timestamps, wrap-around taken as the short way."""
    return ((a - b + 0x80000000) & MASK) - 0x80000000


class SenderClock:
    """The newest sender report of one receiver: RTP timestamp -> sender's wall clock."""

    __slots__ = ("_at", "_ntp", "_rtp", "clock_rate", "reports")

    def __init__(self, clock_rate: int = 90_000) -> None:
        self.clock_rate = clock_rate
        self._ntp: float | None = None
        self._rtp = 0
        self._at = 0.0
        self.reports = 0

    def on_report(self, ntp: int, rtp_timestamp: int, now: float | None = None) -> None:
        """A sender report: ``ntp`` its 64-bit NTP time, ``rtp_timestamp`` the same instant."""
        self._ntp = ntp_to_unix(ntp)
        self._rtp = rtp_timestamp & MASK
        self._at = time.monotonic() if now is None else now
        self.reports += 1

    def capture_of(self, rtp_timestamp: int, now: float | None = None) -> float | None:
        """The sender-clock time (Unix seconds) of ``rtp_timestamp``; None without a recent
        report or when the timestamp is too far from it to be the same stream."""
        if self._ntp is None or self.clock_rate <= 0:
            return None
        now = time.monotonic() if now is None else now
        if now - self._at > MAX_REPORT_AGE:
            return None
        seconds = rtp_diff(rtp_timestamp, self._rtp) / self.clock_rate
        if abs(seconds) > MAX_EXTRAPOLATION:
            return None
        return self._ntp + seconds


class CaptureMap:
    """Ring of ``output RTP timestamp (32 bits) -> capture time`` for one output timeline.

    Written by one thread (a decoder thread or the event loop), read by the event loop:
    each step is one dict/deque operation (atomic under the GIL); the lock only keeps a
    write's insert and eviction together.
    """

    def __init__(self, size: int = RING_SIZE) -> None:
        self.size = size
        self._times: dict[int, float] = {}
        self._order: deque[int] = deque()
        self._lock = threading.Lock()
        self.noted = 0

    def note(self, timestamp: int, capture: float | None) -> None:
        if capture is None:
            return
        key = timestamp & MASK
        with self._lock:
            if key not in self._times:
                self._order.append(key)
                if len(self._order) > self.size:
                    self._times.pop(self._order.popleft(), None)
            self._times[key] = capture
            self.noted += 1

    def lookup(self, timestamp: int) -> float | None:
        return self._times.get(timestamp & MASK)

    def __len__(self) -> int:
        return len(self._times)


class SenderReports:
    """An RTCP handler for one of the teacher's receivers: each sender report goes to
    ``clock``, then every packet to ``original`` (aiortc's own handler, unchanged).
    Installed by ``ingress.install_tap`` through the fence
    (``webrtc_private.replace_receiver_rtcp_handler``)."""

    def __init__(self, clock: SenderClock) -> None:
        self.clock = clock
        self.original: Callable[[Any], Any] | None = None

    async def __call__(self, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self.clock.on_report(info.ntp_timestamp, info.rtp_timestamp)
        if self.original is not None:
            await self.original(packet)


def _stream_of(relay: Any, relay_peer_id: str, kind: str) -> Any:
    peer = relay.subscriber(relay_peer_id)  # the relay's Subscriber, or None
    if peer is None:
        return None, None
    return peer, peer.streams.get(kind)


def timeline_of(subscriber: Any, kind: str) -> CaptureMap | None:
    """The capture map of the timeline a subscriber's camera ``kind`` line plays."""
    lesson = subscriber.media  # the lesson's feeds (lesson_media.LessonMedia)
    if kind == "video":
        return getattr(lesson.camera.source, "capture", None)
    return getattr(lesson.audio, "capture", None)


def capture_for(relay: Any, relay_peer_id: str, kind: str, ssrc: int,
                rtp_timestamp: int) -> float | None:
    """The teacher-clock capture time of the frame a subscriber reports as played:
    ``ssrc`` must be its camera ``kind`` stream's (batched send path, the default), the
    timestamp one of the last :data:`RING_SIZE` sent. None when unknown."""
    from .webrtc_private import sender_ssrc

    subscriber, stream = _stream_of(relay, relay_peer_id, kind)
    if stream is None or sender_ssrc(stream.sender) != ssrc:
        return None
    table = timeline_of(subscriber, kind)
    if table is None:
        return None
    return table.lookup(rtp_timestamp - stream._timestamp_origin)
