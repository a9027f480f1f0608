"""One outgoing m-line of a relay peer (grid slot, share, stage): the same wiring as a
subscriber's camera line, in one place.

aiortc's sender gets a :class:`PassthroughEncoder` (it records REMB); with
``batched_send`` an :class:`~.rtpout.RtpStream` is what the fan-out writes to, otherwise
the :class:`PacketTrack` queue is, read by aiortc's sender task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender

from . import webrtc_private as private
from .config import RelayConfig
from .rtpout import RtpStream
from .tracks import PacketTrack, PassthroughEncoder, Sink


class SampledLatency:
    """A forward-latency observer: the Prometheus histogram, plus the raw samples kept for
    ``stats()`` (load tests want percentiles finer than the buckets)."""

    def __init__(self, metric: Any, samples: deque[float]) -> None:
        self._metric = metric
        self._samples = samples

    def observe(self, value: float) -> None:
        self._metric.observe(value)
        self._samples.append(value)


def percentiles(samples: deque[float] | list[float]) -> dict:
    """``{"count", "p50_ms", "p95_ms", "max_ms"}`` of latency samples in seconds."""
    values = sorted(samples)
    if not values:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}

    def at(q: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"count": len(values), "p50_ms": at(0.5), "p95_ms": at(0.95),
            "max_ms": round(1000 * values[-1], 3)}


class OutLine:
    """A sendonly m-line fed with shared packets: ``sink.push(packet)``."""

    def __init__(self, config: RelayConfig, sender: RTCRtpSender, track: PacketTrack, *,
                 on_keyframe_request: Callable[[], None] | None = None,
                 on_ready: Callable[[], None] | None = None,
                 latency: Any = None) -> None:
        self.kind = track.kind
        self.track = track
        self.encoder = PassthroughEncoder(track.kind)
        private.set_sender_encoder(sender, self.encoder)
        video = track.kind == "video"
        self.stream: RtpStream | None = None
        if config.batched_send:
            self.stream = RtpStream(sender, track.kind,
                                    on_keyframe_request=on_keyframe_request if video else None,
                                    on_ready=on_ready if video else None)
            if latency is not None:
                self.stream._latency = latency  # our metric label instead of video/audio
            self.sink: Sink = self.stream
        else:
            if video and on_keyframe_request is not None:
                private.replace_keyframe_handler(sender, on_keyframe_request)
            if latency is not None:
                track._latency = latency
            self.sink = track

    def restart(self) -> None:
        """A new source: send nothing until its next keyframe."""
        self.sink.restart()  # type: ignore[attr-defined]

    @property
    def bytes_sent(self) -> int:
        if self.stream is not None:
            return self.stream.octets + 12 * self.stream.packets
        return 0

    @property
    def sent(self) -> int:
        """Frames (video) or packets (audio) written, or queued for aiortc's sender."""
        if self.stream is not None:
            return self.stream.sent
        return self.track.sent + self.track.queued

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.track.stop()

    def stats(self) -> dict:
        if self.stream is not None:
            return self.stream.stats()
        return {"path": "tasks", "sent": self.track.sent, "queued": self.track.queued,
                "dropped": self.track.dropped}
