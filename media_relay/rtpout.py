"""The batched send path: a shared packet is written to every subscriber in one loop pass.

A rendition (or the audio fan-out) calls :meth:`RtpStream.push` for every subscriber as
soon as it has a packet. ``push`` does what aiortc's ``RTCRtpSender._run_rtp`` does for one
frame, without a task, a queue or an ``RtpPacket`` object per packet: for each payload that
was packetized once for everyone it writes this subscriber's RTP header (its ssrc,
sequence number, timestamp offset, payload type and the ``mid`` / ``abs-send-time``
extensions, byte for byte as ``RtpPacket.serialize`` would), SRTP-protects it with the
DTLS transport's session and hands it to the socket of the nominated ICE pair.

The sender object stays aiortc's, and keeps doing everything else:
- its RTCP task sends sender reports: ``push`` updates the counters it reads (packet and
  octet counts, the NTP/RTP timestamp pair of the last packet sent);
- RTCP from the browser is routed to it by ssrc (the sender's ssrc is used as ours):
  receiver reports give RTT and loss (aiortc computes RTT, :class:`RtpStream` also keeps
  the last report for ``stats()``), NACK calls the sender's retransmit (replaced: served
  from this stream's history, RTX-wrapped when RTX was negotiated, nothing older than the
  newest keyframe, within a byte budget of half the media sent), PLI/FIR call
  its keyframe handler (replaced: a keyframe request to the rendition), REMB sets
  ``target_bitrate`` on the sender's encoder (the :class:`PassthroughEncoder`, recorded).
- every private aiortc/aioice name used for this is a function of :mod:`.webrtc_private`;
- its RTP task waits on the subscriber's :class:`PacketTrack`, which the batched path
  never feeds: it costs nothing and ends when the track stops.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from aioice.ice import StunProtocol
from aiortc import RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
    wrap_rtx,
)
from aiortc.utils import random32

from . import metrics
from . import webrtc_private as private

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHLL")
_EXT_HEADER = struct.Struct("!HH")
_NTP_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
_NTP_SCALE = 1 << 32
_RTX_MAX = 3
"""Times one packet is sent again at most (NACK)."""
_RTX_MIN_GAP = 0.05
"""Seconds between two retransmissions of one packet, at least (or 1.5 x RTT)."""
_RTX_SHARE = 0.5
"""Retransmissions may use at most this share of the media bytes sent (a token bucket):
on a congested link NACKs ask for more than the link lost, and unbounded RTX keeps the
bottleneck queue full (seen at 400 kbit/s: as many packets retransmitted as sent)."""
_RTX_BUCKET = 64_000
"""Bytes of retransmission credit at most (a burst: one lost keyframe of the top tier)."""
_PAD_BURST = 0.2
"""Seconds of padding credit kept at most (padding goes out with each video frame)."""
_PAD_TIMER = 0.02
"""Seconds between padding bursts while no video is written (audio-only probing)."""
_PAD_RECENT = 8
"""Padding repeats (RTX-wrapped) the most recent packets, never older ones: a receiver that
sees a packet far behind its origin resets its buffer (aiortc: 100 packets)."""


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp (what ``aiortc.clock`` computes, cheaper)."""
    return int((time.time() + _NTP_OFFSET) * _NTP_SCALE)


class HeaderTemplate:
    """This stream's RTP header bytes after the fixed 12: extension header and elements.

    Built with aiortc's own ``HeaderExtensionsMap.set`` (so the layout is aiortc's); the
    3 ``abs-send-time`` bytes are located by serializing twice with different values.
    """

    def __init__(self, extensions_map: HeaderExtensionsMap, mid: str | None) -> None:
        def build(abs_send_time: int) -> tuple[int, bytes]:
            values = HeaderExtensions()
            values.mid = mid
            values.abs_send_time = abs_send_time
            return extensions_map.set(values)

        profile, low = build(0)
        _, high = build(0xFFFFFF)
        self.has_extension = bool(low)
        self.first_byte = 0x90 if low else 0x80
        head = _EXT_HEADER.pack(profile, len(low) >> 2) if low else b""
        changed = [i for i in range(len(low)) if low[i] != high[i]]
        if changed:
            start = changed[0]
            if changed != [start, start + 1, start + 2]:
                raise RuntimeError("unexpected abs-send-time layout")
            self.before = head + low[:start]
            self.after = low[start + 3:]
            self.has_abs_send_time = True
        else:
            self.before = head + low
            self.after = b""
            self.has_abs_send_time = False

    def extension(self, ntp: int) -> bytes:
        if self.has_abs_send_time:
            return self.before + ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big") + self.after
        return self.before


def serialize(template: HeaderTemplate, ntp: int, payload_type: int, marker: bool,
              sequence_number: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    """One RTP packet as :meth:`RtpPacket.serialize` would write it (for tests and RTX)."""
    return (_HEADER.pack(template.first_byte, (0x80 if marker else 0) | payload_type,
                         sequence_number, timestamp, ssrc)
            + template.extension(ntp) + payload)


class RtpStream:
    """One subscriber's outgoing stream of one kind, written directly by the fan-out.

    Created before negotiation on the transceiver's sender (it wraps ``sender.send`` to
    learn the negotiated payload types, mid and extensions); writes nothing until the
    sender has started and the DTLS transport is connected. Video starts at a keyframe
    (``on_ready`` asks for one when the stream becomes writable).
    """

    def __init__(self, sender: RTCRtpSender, kind: str,
                 on_keyframe_request: Callable[[], None] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.sender = sender
        self.kind = kind
        self._video = kind == "video"
        self.video_codec = "VP8"
        """The codec negotiated for this video stream (the feeds pick its rendition by it)."""
        self._on_keyframe_request = on_keyframe_request
        self._on_ready = on_ready
        self._live = True
        self._ready = False
        self._need_keyframe = self._video
        self._ssrc = private.sender_ssrc(sender)
        self._sequence = random_sequence_number()
        self._timestamp_origin = random32()
        self._payload_type = 0
        self._rtx_payload_type: int | None = None
        self._rtx_sequence = random_sequence_number()
        self._extensions_map = HeaderExtensionsMap()
        self._template: HeaderTemplate | None = None
        self._history: list[bytes | None] = [None] * RTP_HISTORY_SIZE
        self._dtls: Any = None
        self._ice: Any = None
        self._pair: Any = None
        self._write: Callable[[bytes], int] | None = None
        self._latency = metrics.LATENCY_VIDEO if self._video else metrics.LATENCY_AUDIO
        self._dropped_metric = metrics.DROPPED_VIDEO if self._video else metrics.DROPPED_AUDIO
        # stats
        self.sent = 0
        """Frames (video) or packets (audio) written."""
        self.packets = 0
        self.octets = 0
        self.dropped = 0
        self.retransmits = 0
        self.rtx_suppressed = 0
        self._rtx_state: dict[int, tuple[tuple[int, float], int]] = {}
        self._rtx_credit = float(_RTX_BUCKET) / 4
        self._keyframe_sequence: int | None = None
        """First packet of the newest keyframe written: nothing before it is resent (the
        decoder starts again there; after a tier switch the old tier's packets are moot)."""
        self.rtx_stale = 0
        self.rtx_over_budget = 0
        self.padding_bitrate: int | None = None
        """Probing: bit/s of padding to add (RTX copies of recent packets); None: none."""
        self._pad_credit = 0.0
        self._pad_at = 0.0
        self._pad_index = 0
        self._pad_timer: asyncio.TimerHandle | None = None
        self.padding_packets = 0
        self.padding_octets = 0
        self.nacked = 0
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self.restarts = 0
        self.since_restart = {"packets": 0, "keyframes": 0, "dropped": 0}
        """What was written since the last tier switch (reset by :meth:`restart`)."""
        self.reports = 0
        self.fraction_lost: int | None = None
        self.packets_lost: int | None = None
        self.jitter: int | None = None
        self.remb_bitrate: int | None = None
        self._highest: int | None = None
        self.on_report: Callable[[RtpStream, Any, int | None], None] | None = None
        """Called with (stream, report block, packets expected since the previous one) for
        each receiver report block about this stream, after aiortc updated its RTT."""
        self.on_remb: Callable[[int], None] | None = None
        self.wait_seconds = 0.0
        """Sum of fan-out -> written for this subscriber (its place in the fan-out pass)."""
        self.wait_max = 0.0
        # take over the sender's RTP-facing hooks (instance attributes shadow the methods)
        self._sender_send = sender.send
        sender.send = self._send  # type: ignore[method-assign]
        self._sender_handle_rtcp = private.replace_rtcp_handler(sender, self._handle_rtcp)
        private.replace_retransmit(sender, self._retransmit)
        private.replace_keyframe_handler(sender, self._keyframe_request)

    # ---- set-up (aiortc calls sender.send once the DTLS transport is connected) ----------
    async def _send(self, parameters: RTCRtpSendParameters) -> None:
        await self._sender_send(parameters)
        codec = parameters.codecs[0]
        self._payload_type = codec.payloadType
        for other in parameters.codecs:  # as RTCRtpSender.send picks it
            if is_rtx(other) and other.parameters.get("apt") == codec.payloadType:
                self._rtx_payload_type = other.payloadType
                break
        self._extensions_map.configure(parameters)
        self._template = HeaderTemplate(self._extensions_map, parameters.muxId)
        self._dtls = self.sender.transport
        self._ice = private.ice_connection(self._dtls)
        self._ready = self._live
        if self._ready and self._video and self._on_ready is not None:
            self._on_ready()

    def _writer(self) -> Callable[[bytes], int] | None:
        """The function that protects and sends one RTP packet now, or None (not connected)."""
        dtls = self._dtls
        if dtls is None or not private.dtls_connected(dtls):
            return None
        pair = private.nominated_pair(self._ice)
        if pair is None:
            return None
        if pair is not self._pair:
            self._pair = pair
            self._write = self._make_writer(dtls, pair)
        return self._write

    @staticmethod
    def _make_writer(dtls: Any, pair: Any) -> Callable[[bytes], int]:
        protocol = pair.protocol
        if type(protocol) is StunProtocol and protocol.transport is not None:
            # plain UDP host/srflx pair: what aioice's send_data does, without a coroutine
            sendto = protocol.transport.sendto
            protect = private.srtp_protect(dtls)
            addr = pair.remote_addr

            def write(data: bytes) -> int:
                protected = protect(data)
                sendto(protected, addr)
                return len(protected)

            return write

        # TURN or anything else: aiortc's own (asynchronous) path, in order
        def write_async(data: bytes) -> int:
            task = asyncio.ensure_future(private.send_rtp(dtls, data))
            task.add_done_callback(_ignore_connection_error)
            return 0  # counted by _send_rtp itself

        return write_async

    # ---- the hot path (event loop, called by the fan-out) --------------------------------
    def push(self, packet: Any) -> None:
        """Write one shared packet (``av.Packet`` whose ``opaque`` is a PacketMeta) now."""
        meta = packet.opaque
        if self._need_keyframe:
            if not meta.keyframe or not self._ready:
                self.dropped += 1
                self.since_restart["dropped"] += 1
                self._dropped_metric.inc()
                return
            self._need_keyframe = False
        write = self._writer() if self._live else None
        if write is None or not private.sender_enabled(self.sender):
            self.dropped += 1
            self._dropped_metric.inc()
            if self._video:
                self._need_keyframe = True
            return
        ntp = ntp_now()
        template = self._template
        extension = template.extension(ntp)  # type: ignore[union-attr]
        first = template.first_byte  # type: ignore[union-attr]
        payload_type = self._payload_type
        ssrc = self._ssrc
        timestamp = (self._timestamp_origin + meta.rtp_timestamp) & 0xFFFFFFFF
        sequence = self._sequence
        history = self._history
        pack = _HEADER.pack
        payloads = meta.payloads
        last = len(payloads) - 1
        octets = 0
        wire = 0
        if meta.keyframe and self._video:
            self._keyframe_sequence = sequence
        for index, payload in enumerate(payloads):
            data = pack(first, (payload_type | 0x80) if index == last else payload_type,
                        sequence, timestamp, ssrc) + extension + payload
            history[sequence % RTP_HISTORY_SIZE] = data
            wire += write(data)
            octets += len(payload)
            sequence = (sequence + 1) & 0xFFFF
        self._sequence = sequence
        count = last + 1
        credit = self._rtx_credit + _RTX_SHARE * octets
        self._rtx_credit = credit if credit < _RTX_BUCKET else float(_RTX_BUCKET)
        # what RTCRtpSender._run_rtp keeps for its sender reports (and RR statistics)
        private.record_sent(self.sender, ntp, timestamp, count, octets)
        if wire:  # the DTLS transport's own tx statistics
            private.count_transport_sent(self._dtls, count, wire)
        self.sent += 1
        self.packets += count
        self.octets += octets
        since = self.since_restart
        since["packets"] += count
        if meta.keyframe and self._video:
            self.keyframes_sent += 1
            since["keyframes"] += 1
        now = time.monotonic()
        self._latency.observe(now - meta.ingress)
        if self.padding_bitrate:
            self._pad(now, write)
        wait = now - meta.fanout
        self.wait_seconds += wait
        if wait > self.wait_max:
            self.wait_max = wait

    # ---- RTCP from the subscriber (routed to the sender by ssrc) -------------------------
    async def _handle_rtcp(self, packet: Any) -> None:
        await self._sender_handle_rtcp(packet)
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self.reports += 1
                    self.fraction_lost = report.fraction_lost
                    self.packets_lost = report.packets_lost
                    self.jitter = report.jitter
                    expected = None
                    if self._highest is not None:
                        delta = (report.highest_sequence - self._highest) & 0xFFFFFFFF
                        expected = delta if delta < 0x80000000 else None
                    self._highest = report.highest_sequence
                    if self.on_report is not None and self._live:
                        self.on_report(self, report, expected)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.remb_bitrate = bitrate
                if self.on_remb is not None and self._live:
                    self.on_remb(bitrate)

    async def _retransmit(self, sequence_number: int) -> None:
        """NACK: send a packet again from the history (RTX-wrapped if negotiated)."""
        self.nacked += 1
        data = self._history[sequence_number % RTP_HISTORY_SIZE]
        if data is None or int.from_bytes(data[2:4], "big") != sequence_number:
            return
        # a receiver re-NACKs every missing packet with each packet it gets (aiortc does):
        # serve one packet again at most _RTX_MAX times, once per RTT, or on a lossy thin
        # link the retransmissions crowd out the media and the loss feeds itself
        key = self._keyframe_sequence
        if key is not None and 0 < ((key - sequence_number) & 0xFFFF) < 0x8000:
            self.rtx_stale += 1
            return
        now = time.monotonic()
        slot = sequence_number % RTP_HISTORY_SIZE
        last, count = self._rtx_state.get(slot, (None, 0))
        if last is not None and last[0] == sequence_number:
            rtt = self.rtt or 0.0
            if count >= _RTX_MAX or now - last[1] < max(_RTX_MIN_GAP, 1.5 * rtt):
                self.rtx_suppressed += 1
                return
        else:
            count = 0
        if self._rtx_credit < len(data):
            self.rtx_over_budget += 1
            return
        self._rtx_state[slot] = ((sequence_number, now), count + 1)
        write = self._writer() if self._live else None
        if write is None:
            return
        self._rtx_credit -= len(data)
        write(self._rtx_wrap(data))
        self.retransmits += 1

    def _rtx_wrap(self, data: bytes) -> bytes:
        """``data`` as an RTX packet (its own ssrc and sequence), or as is without RTX."""
        if self._rtx_payload_type is None:
            return data
        original = RtpPacket.parse(data, self._extensions_map)
        if original.extensions.abs_send_time is not None:  # sent now, not when first sent:
            original.extensions.abs_send_time = (ntp_now() >> 14) & 0xFFFFFF  # REMB reads it
        packet = wrap_rtx(original, payload_type=self._rtx_payload_type,
                          sequence_number=self._rtx_sequence,
                          ssrc=private.sender_rtx_ssrc(self.sender))
        self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        return packet.serialize(self._extensions_map)

    def set_padding(self, bitrate: int | None) -> None:
        """Probe the link: add ``bitrate`` bit/s of padding (None or 0: stop). The padding is
        RTX copies of the newest packets, which a receiver drops as duplicates, so a probe
        that fails costs nothing visible; without RTX negotiated there is no padding. It goes
        out with each video frame, or on a 20 ms timer while none flows (audio-only)."""
        bitrate = bitrate if bitrate and bitrate > 0 and self._video else None
        if bitrate and not self.padding_bitrate:
            self._pad_at = time.monotonic()
            self._pad_credit = 0.0
            if self._pad_timer is None:
                self._pad_timer = asyncio.get_running_loop().call_later(
                    _PAD_TIMER, self._pad_on_timer)
        self.padding_bitrate = bitrate

    def _pad_on_timer(self) -> None:
        """Padding while no video flows (audio-only probing the low tier): every
        ``_PAD_TIMER`` s unless a frame was written meanwhile (push pads then)."""
        self._pad_timer = None
        if not self.padding_bitrate or not self._live:
            return
        now = time.monotonic()
        if now - self._pad_at >= _PAD_TIMER * 0.9:
            write = self._writer()
            if write is not None:
                self._pad(now, write)
        self._pad_timer = asyncio.get_running_loop().call_later(_PAD_TIMER, self._pad_on_timer)

    def _pad(self, now: float, write: Callable[[bytes], int]) -> None:
        rate = self.padding_bitrate or 0
        if self._rtx_payload_type is None:
            return
        credit = self._pad_credit + rate / 8 * (now - self._pad_at)
        self._pad_at = now
        limit = rate / 8 * _PAD_BURST
        credit = min(credit, limit)
        history = self._history
        newest = (self._sequence - 1) & 0xFFFF
        while credit > 0:
            seq = (newest - self._pad_index % _PAD_RECENT) & 0xFFFF
            self._pad_index += 1
            data = history[seq % RTP_HISTORY_SIZE]
            if data is None or int.from_bytes(data[2:4], "big") != seq:
                if self._pad_index % _PAD_RECENT == 0:
                    break  # nothing recent to repeat
                continue
            wire = self._rtx_wrap(data)
            write(wire)
            credit -= len(wire)
            self.padding_packets += 1
            self.padding_octets += len(wire)
        self._pad_credit = credit

    def restart(self) -> None:
        """Moved to another rendition: send nothing until its next keyframe (the stream's
        ssrc, sequence numbers and timestamp origin stay: the receiver sees a new size)."""
        if self._video:
            self._need_keyframe = True
            self.restarts += 1
            self.since_restart = {"packets": 0, "keyframes": 0, "dropped": 0}

    def _keyframe_request(self) -> None:
        self.keyframe_requests += 1
        if self._on_keyframe_request is not None and self._live:
            self._on_keyframe_request()

    @property
    def rtt(self) -> float | None:
        """Round-trip time (s) aiortc computed from the last receiver report."""
        return private.sender_rtt(self.sender)

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        self._live = False
        self.padding_bitrate = None
        if self._pad_timer is not None:
            self._pad_timer.cancel()
            self._pad_timer = None
        self._ready = False
        self._history = [None] * RTP_HISTORY_SIZE
        self._pair = self._write = None
        self._on_keyframe_request = self._on_ready = None
        self.on_report = self.on_remb = None

    def stats(self) -> dict:
        rtt = self.rtt
        return {
            "path": "batched", "sent": self.sent, "queued": 0, "dropped": self.dropped,
            "overflows": 0, "packets": self.packets, "octets": self.octets,
            "retransmits": self.retransmits, "nacked": self.nacked,
            "keyframes_sent": self.keyframes_sent, "keyframe_requests": self.keyframe_requests,
            "restarts": self.restarts, "since_restart": dict(self.since_restart),
            "rtx_suppressed": self.rtx_suppressed, "rtx_over_budget": self.rtx_over_budget,
            "rtx_stale": self.rtx_stale,
            "padding_bitrate": self.padding_bitrate, "padding_packets": self.padding_packets,
            "padding_octets": self.padding_octets,
            "wait_ms_avg": round(1000 * self.wait_seconds / self.sent, 3) if self.sent else None,
            "wait_ms_max": round(1000 * self.wait_max, 3),
            "rtt_ms": round(1000 * rtt, 2) if rtt is not None else None,
            "fraction_lost": self.fraction_lost, "packets_lost": self.packets_lost,
            "jitter": self.jitter, "receiver_reports": self.reports,
        }


def _ignore_connection_error(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ConnectionError):
            logger.warning("RTP send failed: %r", exc)
