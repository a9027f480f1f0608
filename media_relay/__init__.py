"""Encode-once media relay: one publisher per lesson, its video encoded once per tier and
the same packets (and the teacher's Opus audio, as received) sent to every subscriber.

Imports nothing from ``signaling`` or ``classroom_web``; they drive it through :class:`Relay`.

Object model (each with ``close()`` and ``stats()``)::

    Relay -> RelayLesson -> Publisher      the teacher's RTCPeerConnection (replaceable)
                         -> VideoSource    decodes the teacher's video once (a thread)
                         -> Rendition      one VP8 encoder + thread per tier in use
                                           (ladder_spec; the top tier always, while media
                                           flows; lower tiers while a subscriber is on them)
                         -> AudioFanout    the teacher's Opus packets, as received
                         -> Subscriber     a classroom's RTCPeerConnection, PacketTracks
                                           and RtpStreams (the batched send path), its
                                           RateController (rate_control.py) and tier

Two-way lesson (issue 7, docs/two-way.md)::

    RelayLesson -> Uplink         a classroom's camera + mic (uplink.py), tapped before
                                  aiortc's decoder, never decoded unless on stage; VP8
                                  packetized once per frame for the grid slots showing it
                -> Grid           the teacher's grid (grid.py): K GridSlots, each forwarding
                                  one visible uplink's VP8 undecoded on its own timeline,
                                  from a keyframe requested on assignment; + stage audio
                -> Stage          the classroom on stage (stage.py): a VideoFeed (decode
                                  once, encode once per tier no larger than the uplink) for
                                  every subscriber's stage video line; its Opus as received
                                  (StageAudio) to stage audio lines but its own and the grid
                -> share          the teacher's second video m-line: a VideoFeed of its own;
                                  priority.py splits a subscriber's tier (share first)
    feed.py: VideoFeed = VideoSource + Renditions (camera, share, stage alike; move() is
    the one way a sink changes tier); tapped.py: TappedPeer, what Publisher and Uplink share
    (taps, media activity, PLI, lifetime);
    outline.py: OutLine = one extra sendonly m-line (PassthroughEncoder + RtpStream).

Send path (``RelayConfig.batched_send``, default True): when a rendition or the audio
fan-out has a packet, one loop pass writes it to every subscriber (``rtpout.RtpStream``:
header rewrite + SRTP + sendto per subscriber, no task or queue per subscriber); aiortc's
``RTCRtpSender`` keeps its RTCP task (sender reports, RR/NACK/PLI/REMB handling). With
False, each subscriber's sender task reads a ``PacketTrack`` (``recv()`` -> shared
``av.Packet``), as a recorder or any other reader still can.

aiortc/aioice internals this package relies on (check them when upgrading; tests cover each):
- ingress.py, tapped.py (Publisher, Uplink): ``RTCRtpReceiver.__decoder_queue`` /
  ``__jitter_buffer`` / ``__decoder_error`` / ``__decoder_thread`` / ``__kind``;
  ``JitterBuffer._remove_frame``, ``._packets``, ``._origin``, ``._capacity``;
  ``RtpPacket._data``.
- rendition.py, uplink.py: ``Vp8Encoder._packetize``.
- sockets.py: asyncio's ``_SelectorDatagramTransport._read_ready`` (replaced by a batched
  reader, checked against the names it uses); aioice ``Connection._protocols`` (buffers).
- port_range.py (``rtc_ports``): asyncio's ``BaseEventLoop.create_datagram_endpoint``
  (wrapped; its ``local_addr``/``remote_addr``/``sock`` parameters checked at install);
  aioice gathering host candidates through it with ``local_addr=(address, 0)``.
- mdns.py: aioice 0.13 failing ICE at end-of-candidates when no remote candidate is left
  (all ``.local``, unresolved), before peer-reflexive checks can arrive: such peers never
  get end-of-candidates. Harmless if a later aioice waits for checks itself.
- outline.py: ``RtpStream._latency`` / ``PacketTrack._latency`` (our metric label).
- config.py: peers use ``bundlePolicy=MAX_BUNDLE``: with aiortc's default (balanced) a
  second m-line of a kind that is not the offer's first kind keeps a transport of its own
  that BUNDLE never replaces (it never connects).
- subscriber.py: ``RTCRtpSender.__encoder`` (set to the PassthroughEncoder, which records
  REMB through its ``target_bitrate``); ``RTCRtpSender._send_keyframe`` (replaced: PLI/FIR
  -> rendition keyframe request).
- rtpout.py (batched path), on each subscriber's ``RTCRtpSender``:
  instance attributes shadowing methods: ``send`` (wrapped: learns the negotiated
  parameters), ``_handle_rtcp_packet`` (wrapped: keeps the last receiver report),
  ``_retransmit`` (replaced: NACK served from the stream's history, RTX-wrapped),
  ``_send_keyframe`` (replaced, as above); read: ``_ssrc``, ``_rtx_ssrc``, ``_enabled``,
  ``__rtt`` (read after aiortc handled a receiver report: fed to the rate controller);
  written after every frame, for the RTCP task's sender reports and its RR
  statistics: ``__packet_count``, ``__octet_count``, ``__ntp_timestamp``,
  ``__rtp_timestamp``.
  On the sender's ``RTCDtlsTransport``: ``_state``, ``_tx_srtp`` (its ``protect()``),
  ``_send_rtp`` (fallback for non-UDP pairs), ``__tx_bytes`` / ``__tx_packets`` (kept
  right for getStats), ``transport._connection`` (the aioice ``Connection``); on aioice:
  ``Connection._nominated[1]`` (the selected ``CandidatePair``: ``.protocol``,
  ``.remote_addr``), ``StunProtocol.transport`` (the asyncio datagram transport).
  ``aiortc.rtcrtpsender.random_sequence_number`` and ``aiortc.rtp`` helpers are used as is.
"""

from .config import RelayConfig, RelayError
from .relay import Relay

__all__ = ["Relay", "RelayConfig", "RelayError"]
