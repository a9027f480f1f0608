"""Encode-once media relay: one publisher per lesson, its video encoded once per tier and
the same packets (and the teacher's Opus audio, as received) sent to every subscriber.

Imports nothing from ``signaling`` or ``classroom_web``; they drive it through :class:`Relay`
and hear from it through a :class:`RelayListener` (docs/architecture.md, "Relay").

Object model (each with ``close()`` and ``stats()``)::

    Relay -> RelayLesson -> LessonMedia    the feeds its children get (lesson_media.py);
                                           no child holds the lesson (on_closed=forget)
                         -> Publisher      the teacher's RTCPeerConnection (replaceable)
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

aiortc/aioice/asyncio internals: every private name this product uses (the sender fed
packets, its RTCP taken over, receivers tapped before the decoder, RTP written to the
nominated ICE pair, batched datagram reads, the RTC port range, ...) is behind a small
named function of ``webrtc_private.py``, which checks each name against the installed
aiortc/aioice/asyncio at import and names the supported versions when one is missing
(docs/architecture.md, "The WebRTC stack"). Other behaviours relied on without a private
name:
- mdns.py: aioice 0.13 failing ICE at end-of-candidates when no remote candidate is left
  (all ``.local``, unresolved), before peer-reflexive checks can arrive: such peers never
  get end-of-candidates. Harmless if a later aioice waits for checks itself.
- config.py: peers use ``bundlePolicy=MAX_BUNDLE``: with aiortc's default (balanced) a
  second m-line of a kind that is not the offer's first kind keeps a transport of its own
  that BUNDLE never replaces (it never connects).
- ``aiortc.rtcrtpsender.random_sequence_number`` and ``aiortc.rtp`` helpers are used as is.
"""

from .config import RelayConfig, RelayError
from .listener import RelayListener, TierChange
from .relay import Relay

__all__ = ["Relay", "RelayConfig", "RelayError", "RelayListener", "TierChange"]
