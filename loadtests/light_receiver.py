"""Receivers that count what arrives instead of playing it, for load generators.

A load generator's classrooms must cost much less than the server they load. An aiortc
receiver, even with :func:`classroom_client.media.install_counting_decoder`, runs every
packet through NACK bookkeeping, depayloading, a jitter buffer and a queue to one decoder
thread per track (five tracks per classroom: 150 threads for 30 classrooms, all taking the
GIL). :func:`install` replaces a receiver's per-packet handler with one that keeps what
the server relies on and drops the rest:

* kept: SRTP decryption and RTP parsing (aiortc's transport, before the receiver), the
  RTCP statistics behind the receiver reports (loss, jitter, LSR/DLSR for the RTT), so
  the server's rate controller sees a healthy receiver;
* dropped: NACKs, depayloading, reassembly, decoding, REMB (an optional input of the
  rate controller).

Counted per receiver: media packets, bytes, and frames (a video frame is a packet with
the RTP marker bit; an audio frame is a packet).

:class:`LightPeer` goes further for a whole recvonly peer: once a stream's first packet has
been through aiortc (which binds its SSRC to a receiver), later packets of that SSRC are
counted straight from the socket callback, from the RTP header (which SRTP leaves in
clear), without aioice's STUN parse attempt, its queue, SRTP decryption or aiortc's
parser; RTCP, STUN and unknown SSRCs still take aiortc's path. The receiver reports stay
right: the same statistics objects are fed.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from media_relay import webrtc_private
from media_relay.sockets import enlarge_receive_buffers


@dataclass
class Counts:
    """What one receiver got. ``first_frame_at`` is ``time.monotonic()`` (system-wide on
    Linux, so comparable across the generator's processes)."""

    frames: int = 0
    packets: int = 0
    bytes: int = 0
    rtx: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None


class _Header:
    """The two fields of an RTP packet that ``StreamStatistics.add`` reads."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


_Bind = Callable[[int, StreamStatistics, Counts, bool, bool], None]
"""(ssrc, statistics, counts, video, rtx): a stream seen for the first time."""


def install(receiver: RTCRtpReceiver, bind: _Bind | None = None) -> Counts:
    """Make ``receiver`` count instead of play (before media arrives); returns its counts.
    ``bind`` is told each new SSRC (for :class:`LightPeer`'s socket fast path)."""
    counts = Counts()
    streams: dict[int, StreamStatistics] = webrtc_private.receiver_streams(receiver)
    codecs = webrtc_private.receiver_codecs(receiver)
    video = webrtc_private.receiver_kind(receiver) == "video"

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not webrtc_private.receiver_enabled(receiver):
            return
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
            if bind is not None:
                bind(packet.ssrc, stream, counts, video, is_rtx(codec))
        stream.add(packet)
        if is_rtx(codec):
            counts.rtx += 1
            return
        counts.packets += 1
        counts.bytes += len(packet.payload)
        if packet.marker or not video:
            now = time.monotonic()
            counts.frames += 1
            counts.last_frame_at = now
            if counts.first_frame_at is None:
                counts.first_frame_at = now

    webrtc_private.replace_rtp_handler(receiver, handle)
    return counts


_SEQ_TS = struct.Struct("!HI")


class LightPeer:
    """A recvonly peer of counting receivers, one per ``kinds`` entry (m-line order)."""

    def __init__(self, pc: RTCPeerConnection, kinds: tuple[str, ...]) -> None:
        self.pc = pc
        self._streams: dict[int, tuple[StreamStatistics, Counts, bool, bool]] = {}
        self.counts = [install(pc.addTransceiver(kind, direction="recvonly").receiver,
                               self._bind) for kind in kinds]
        self.fast_packets = 0

    def _bind(self, ssrc: int, stream: StreamStatistics, counts: Counts, video: bool,
              rtx: bool) -> None:
        self._streams[ssrc] = (stream, counts, video, rtx)

    async def connected(self, timeout: float = 30.0, receive_buffer: int = 1 << 20) -> None:
        """Until ICE has connected (RuntimeError after ``timeout``), then hook the sockets
        (the fast path) and give them ``receive_buffer``-byte buffers: a load generator
        briefly descheduled must not lose packets that would be counted against the server."""
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError(f"a receiving peer did not connect within {timeout:g} s")
            await asyncio.sleep(0.05)
        if not self.attach_fast_path():
            raise RuntimeError("no socket to hook: aioice internals changed")
        enlarge_receive_buffers(self.pc, receive_buffer)

    def attach_fast_path(self) -> int:
        """After ICE has connected: count known SSRCs in the socket callback. Returns how
        many sockets were hooked (0 means aiortc's internals moved: update this)."""
        hooked = 0
        seen: set[int] = set()
        for transceiver in self.pc.getTransceivers():
            connection = webrtc_private.ice_connection(transceiver.receiver.transport)
            for protocol in webrtc_private.ice_protocols(connection):
                if id(protocol) not in seen:
                    seen.add(id(protocol))
                    protocol.datagram_received = self._fast(protocol.datagram_received)
                    hooked += 1
        return hooked

    def _fast(self, slow: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        streams = self._streams
        header = _Header()
        unpack = _SEQ_TS.unpack_from

        def datagram_received(data: bytes, addr: Any) -> None:
            # RTP (version 2), not RTCP (payload types 192-208 in the second byte)
            if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
                entry = streams.get(int.from_bytes(data[8:12], "big"))
                if entry is not None:
                    stream, counts, video, rtx = entry
                    header.sequence_number, header.timestamp = unpack(data, 2)
                    stream.add(header)
                    self.fast_packets += 1
                    if rtx:
                        counts.rtx += 1
                        return
                    counts.packets += 1
                    counts.bytes += len(data)
                    if not video or data[1] & 0x80:
                        now = time.monotonic()
                        counts.frames += 1
                        counts.last_frame_at = now
                        if counts.first_frame_at is None:
                            counts.first_frame_at = now
                    return
            slow(data, addr)

        return datagram_received
