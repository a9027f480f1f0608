"""Real encoded packets shaped like the relay's (VP8 in 1/90000, Opus in 1/48000, PacketMeta)."""

from __future__ import annotations

import fractions

import av
import numpy as np

from media_relay.packets import (
    AUDIO_TIME_BASE,
    VIDEO_TIME_BASE,
    PacketMeta,
    make_packet,
)


class PacketSource:
    """Encodes a moving picture and a tone once; hands out relay-style packets in order."""

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30,
                 keyframe_every: float = 1.0, noise: bool = False) -> None:
        self._noise = np.random.default_rng(7).integers(0, 60, (8, height, width), np.uint8) \
            if noise else None
        self.fps = fps
        self.width, self.height = width, height
        vc = av.CodecContext.create("libvpx", "w")
        vc.width, vc.height, vc.pix_fmt = width, height, "yuv420p"
        vc.time_base = VIDEO_TIME_BASE
        vc.framerate = fps
        vc.bit_rate = 1_500_000 if noise else 300_000
        vc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self._vc = vc
        ac = av.CodecContext.create("libopus", "w")
        ac.sample_rate, ac.layout, ac.format = 48000, "mono", "s16"
        ac.time_base = AUDIO_TIME_BASE
        self._ac = ac
        self._key_every = max(1, int(keyframe_every * fps))
        self._vn = 0
        self._an = 0
        t = np.arange(960) / 48000
        self._tone = (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)

    def video(self) -> av.Packet:
        n = self._vn
        self._vn += 1
        y = np.full((self.height, self.width), 40, np.uint8)
        x = (n * 4) % self.width
        y[:, x:x + 16] = 230
        if self._noise is not None:  # busy pictures: a bit rate a thin link cannot carry
            y = y + self._noise[n % len(self._noise)]
        yuv = np.concatenate([y, np.full((self.height // 2, self.width), 128, np.uint8)])
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = n * 90000 // self.fps
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = (av.video.frame.PictureType.I if n % self._key_every == 0
                           else av.video.frame.PictureType.NONE)
        data = b"".join(bytes(p) for p in self._vc.encode(frame))
        keyframe = not data[0] & 1
        meta = PacketMeta([data], frame.pts, keyframe, 0.0)
        return make_packet(data, frame.pts, VIDEO_TIME_BASE, meta)

    def audio(self) -> av.Packet:
        n = self._an
        self._an += 1
        frame = av.AudioFrame.from_ndarray(self._tone.reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = 48000
        frame.pts = n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        data = b"".join(bytes(p) for p in self._ac.encode(frame))
        meta = PacketMeta([data], frame.pts, True, 0.0)
        return make_packet(data, frame.pts, AUDIO_TIME_BASE, meta)

    def interleaved(self, seconds: float, t0: float = 1000.0):
        """(kind, packet, arrival) in arrival order for ``seconds`` of media; ``arrival``
        is a simulated monotonic clock starting at ``t0`` (faster than real time)."""
        audio_per_video = 50 / self.fps
        a_due = 0.0
        a_sent = 0
        for n in range(int(seconds * self.fps)):
            yield "video", self.video(), t0 + n / self.fps
            a_due += audio_per_video
            while a_due >= 1:
                a_due -= 1
                yield "audio", self.audio(), t0 + a_sent * 0.02
                a_sent += 1

    def feed(self, recorder, seconds: float, t0: float = 1000.0) -> None:
        for kind, packet, arrival in self.interleaved(seconds, t0):
            recorder.enqueue(kind, packet, arrival)
