"""Shared encoded packets: what one rendition (or the audio fan-out) hands to every subscriber.

Each encoded frame becomes one ``av.Packet`` with ``pts``/``time_base`` set and ``opaque``
holding a :class:`PacketMeta`: the RTP payloads are computed once per frame, so a
subscriber's sender only adds headers and encrypts. A packet is never changed after fan-out.
"""

from __future__ import annotations

import fractions
import time

import av

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_CLOCK)


class PacketMeta:
    """What the pass-through encoder needs, computed once for every subscriber."""

    __slots__ = ("fanout", "ingress", "keyframe", "payloads", "rtp_timestamp")

    def __init__(self, payloads: list[bytes], rtp_timestamp: int, keyframe: bool,
                 ingress: float) -> None:
        self.payloads = payloads
        self.rtp_timestamp = rtp_timestamp
        self.keyframe = keyframe
        self.ingress = ingress
        """``time.monotonic()`` when the frame arrived in the relay (forward latency)."""
        self.fanout = ingress
        """``time.monotonic()`` when it was handed to the subscribers' queues."""


def make_packet(data: bytes, pts: int, time_base: fractions.Fraction,
                meta: PacketMeta) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = pts
    packet.dts = pts
    packet.time_base = time_base
    packet.is_keyframe = meta.keyframe
    packet.opaque = meta
    return packet


class Timeline:
    """Maps a source's media timestamps onto one continuous output timeline.

    A teacher who reconnects starts a new source whose timestamps start again at 0; the
    subscribers must see timestamps that keep increasing, so the new source is placed
    after the old one by the wall-clock time that passed in between.
    """

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._source: object = None
        self._offset = 0
        self._last_out: int | None = None
        self._last_wall = 0.0

    def map(self, source: object, timestamp: int, strict: bool = True) -> int:
        """``timestamp`` of ``source`` on the output line. ``strict=False``: an output equal
        to the last is kept (the tiers of one cascaded frame share its timestamp)."""
        now = time.monotonic()
        if source != self._source:
            self._source = source
            if self._last_out is None:
                self._offset = -timestamp
            else:
                gap = max(1, int((now - self._last_wall) * self.clock_rate))
                self._offset = self._last_out + gap - timestamp
        out = timestamp + self._offset
        if self._last_out is not None and (out <= self._last_out if strict
                                           else out < self._last_out):
            # never go backwards: a repeated or reordered source timestamp
            out = self._last_out + 1
            self._offset = out - timestamp
        self._last_out = out
        self._last_wall = now
        return out
