"""Encode-once media relay: one publisher per lesson, its video encoded once per tier and
the same packets (and the teacher's Opus audio, as received) sent to every subscriber.

Imports nothing from ``signaling`` or ``classroom_web``; they drive it through :class:`Relay`.

Object model (each with ``close()`` and ``stats()``)::

    Relay -> RelayLesson -> Publisher      the teacher's RTCPeerConnection (replaceable)
                         -> Rendition      one VP8 encoder + media thread per tier
                         -> AudioFanout    the teacher's Opus packets, as received
                         -> Subscriber     a classroom's RTCPeerConnection + PacketTracks

aiortc internals this package relies on (check them when upgrading aiortc; tests cover each):
``RTCRtpReceiver.__decoder_queue`` / ``__jitter_buffer`` / ``__decoder_error`` /
``__decoder_thread`` (ingress.py, publisher.py), ``RTCRtpSender.__encoder`` and
``RTCRtpSender._send_keyframe`` (subscriber.py), ``Vp8Encoder._packetize`` (rendition.py),
``JitterBuffer._remove_frame`` (ingress.py).
"""

from .config import RelayConfig, RelayError
from .relay import Relay

__all__ = ["Relay", "RelayConfig", "RelayError"]
