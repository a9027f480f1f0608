"""Synthetic media for headless clients, and two ways to count what a client receives.

Sources (a teacher without a camera):
    SyntheticVideoTrack(640, 360, 30)   moving pattern with the frame number burned in
    SyntheticAudioTrack()               48 kHz 440 Hz tone, 20 ms s16 frames

Receiving, with decoding (tests that want real pictures):
    counter = FrameCounter(track)       # reads the track in a task
    await counter.wait_for(30, timeout=5); counter.frames; counter.first_frame_at
    read_frame_counter(frame)           # the number SyntheticVideoTrack burned in

Receiving, without decoding (load tests: many subscribers on one core):
    install_counting_decoder()          # once, before any connection starts
    receive_counts(pc_track).frames     # video: frames; audio: packets; also .bytes,
                                        # .keyframes (VP8), .first_at, .last_at
A teacher whose video is encoded like a browser's (realtime, one thread) instead of by
aiortc's encoder (cpu-used -6, noise filter: tens of ms a 720p frame), for load tests:
    EncodedVideoTrack(1280, 720, 30, bitrate=2_000_000)   # yields av.Packet (VP8)

Sending audio as a thin link needs it (aiortc's own Opus encoder is fixed at 96 kbit/s, no FEC):
    opus_encoder(32_000)                # mono Opus with in-band FEC; ClassroomClient.publish
                                        # installs one on its audio sender

The counting decoder replaces ``aiortc.rtcrtpreceiver.decoder_worker`` for every receiver
started afterwards in the process (NACK, PLI and RTCP reports keep working); the track
then yields nothing, so nobody needs to read it. ``uninstall_counting_decoder()`` undoes it.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError
from av.video.frame import PictureType

from media_relay import webrtc_private

VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)

_BITS = 16
_BLOCK = 16
_PATTERNS = 30


def _pattern_frames(width: int, height: int) -> list[np.ndarray]:
    """A few yuv420p pictures (as one (h*3/2, w) array each) of a bar moving over a gradient."""
    frames = []
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    for i in range(_PATTERNS):
        phase = i / _PATTERNS
        luma = 60 + 80 * (0.5 + 0.5 * np.sin(2 * np.pi * (x / width + y / height + phase)))
        bar = int(phase * width)
        luma[:, bar:bar + width // 16] = 220
        yplane = luma.astype(np.uint8)
        uplane = np.full((height // 2, width // 2), 128 + int(40 * np.sin(2 * np.pi * phase)),
                         np.uint8)
        vplane = np.full((height // 2, width // 2), 128 + int(40 * np.cos(2 * np.pi * phase)),
                         np.uint8)
        frames.append(np.concatenate([
            yplane,
            uplane.reshape(height // 4, width),
            vplane.reshape(height // 4, width),
        ]))
    return frames


class SyntheticVideoTrack(MediaStreamTrack):
    """A paced video source: ``fps`` frames a second, pts in 1/90000, counter burned in."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30) -> None:
        super().__init__()
        if width % 4 or height % 4 or width < _BITS * _BLOCK or height < _BLOCK * 2:
            raise ValueError("width and height must be multiples of 4, at least 256x32")
        self.width = width
        self.height = height
        self.fps = fps
        self._patterns = _pattern_frames(width, height)
        self._start: float | None = None
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = self.frames_sent
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + n / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        picture = self._patterns[n % _PATTERNS].copy()
        for bit in range(_BITS):
            value = 235 if (n >> bit) & 1 else 16
            picture[0:_BLOCK, bit * _BLOCK:(bit + 1) * _BLOCK] = value
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts = int(n * VIDEO_CLOCK / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


def read_frame_counter(frame: av.VideoFrame) -> int:
    """The frame number :class:`SyntheticVideoTrack` burned into ``frame`` (modulo 2**16).

    Assumes the picture was not rescaled on the way (the relay keeps sizes up to 720p).
    """
    luma = frame.to_ndarray(format="gray")
    value = 0
    for bit in range(_BITS):
        if luma[_BLOCK // 2, bit * _BLOCK + _BLOCK // 2] > 128:
            value |= 1 << bit
    return value


class EncodedVideoTrack(MediaStreamTrack):
    """:class:`SyntheticVideoTrack` encoded here (PyAV libvpx, realtime, ``cpu_used``, one
    thread) into VP8 ``av.Packet``s that aiortc's sender only packetizes. A keyframe every
    ``keyframe_interval`` s (the sender cannot pass a PLI on to a packet track). Encoding
    runs in the default executor, off the event loop."""

    kind = "video"

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30, *,
                 bitrate: int = 2_000_000, cpu_used: int = 8,
                 keyframe_interval: float = 2.0) -> None:
        super().__init__()
        self._source = SyntheticVideoTrack(width, height, fps)
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = round(fps)
        codec.bit_rate = bitrate
        codec.gop_size = 3000
        codec.qmin, codec.qmax = 2, 56
        codec.options = {"deadline": "realtime", "cpu-used": str(cpu_used),
                         "lag-in-frames": "0", "bufsize": str(bitrate),
                         "minrate": str(bitrate), "maxrate": str(bitrate),
                         "undershoot-pct": "100", "overshoot-pct": "15",
                         "static-thresh": "1", "partitions": "0", "error-resilient": "1"}
        codec.thread_count = 1
        self._codec = codec
        self._keyframe_every = max(1, round(keyframe_interval * fps))
        self.frames_sent = 0

    def _encode(self, frame: av.VideoFrame, keyframe: bool) -> av.Packet | None:
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        if not data:
            return None
        packet = av.Packet(data)
        packet.pts = frame.pts
        packet.time_base = VIDEO_TIME_BASE
        return packet

    async def recv(self) -> av.Packet:
        while True:
            frame = await self._source.recv()
            keyframe = self.frames_sent % self._keyframe_every == 0
            packet = await asyncio.get_running_loop().run_in_executor(
                None, self._encode, frame, keyframe)
            self.frames_sent += 1
            if packet is not None:
                return packet

    def stop(self) -> None:
        self._source.stop()
        super().stop()


class SyntheticAudioTrack(MediaStreamTrack):
    """A paced 48 kHz mono s16 tone in 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.2) -> None:
        super().__init__()
        t = np.arange(AUDIO_RATE, dtype=np.float64) / AUDIO_RATE
        tone = (amplitude * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
        self._samples = 960
        self._chunks = [tone[i:i + self._samples] for i in range(0, AUDIO_RATE, self._samples)]
        self._start: float | None = None
        self.frames_sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = self.frames_sent
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + n * self._samples / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk = self._chunks[n % len(self._chunks)]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * self._samples
        frame.time_base = AUDIO_TIME_BASE
        self.frames_sent += 1
        return frame


# ---- receiving with decoding -----------------------------------------------------------
class FrameCounter:
    """Reads a received (decoding) track in a task and counts what comes out."""

    def __init__(self, track: MediaStreamTrack, *, read_counter: bool = False) -> None:
        self.track = track
        self.kind = track.kind
        self.frames = 0
        self.samples = 0
        self.started_at = time.monotonic()
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.last_counter: int | None = None
        self.size: tuple[int, int] | None = None
        self.ended = False
        self._read_counter = read_counter
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                now = time.monotonic()
                if self.first_frame_at is None:
                    self.first_frame_at = now
                self.last_frame_at = now
                self.frames += 1
                if isinstance(frame, av.VideoFrame):
                    self.size = (frame.width, frame.height)
                    if self._read_counter:
                        self.last_counter = read_frame_counter(frame)
                elif isinstance(frame, av.AudioFrame):
                    self.samples += frame.samples
                self._changed.set()
        except MediaStreamError:
            self.ended = True
            self._changed.set()

    async def wait_for(self, frames: int, timeout: float) -> bool:
        """Wait until ``frames`` frames in total were received; False at the deadline."""
        deadline = time.monotonic() + timeout
        while self.frames < frames:
            left = deadline - time.monotonic()
            if left <= 0 or self.ended:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return self.frames >= frames
        return True

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


# ---- receiving without decoding ---------------------------------------------------------
class ReceiveCounts:
    """What one receiver got: video frames or audio packets, bytes, VP8 keyframes."""

    __slots__ = ("bytes", "first_at", "frames", "keyframes", "last_at")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.keyframes = 0
        self.first_at: float | None = None
        self.last_at: float | None = None


_COUNTS_ATTR = "_classroom_receive_counts"


def _counting_worker(loop: asyncio.AbstractEventLoop, input_q: Any, output_q: asyncio.Queue,
                     decode_error: Any) -> None:
    """Stands in for aiortc's decoder thread: counts encoded frames instead of decoding."""
    counts = ReceiveCounts()
    setattr(output_q, _COUNTS_ATTR, counts)
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            break
        codec, encoded_frame = task
        data = encoded_frame.data
        now = time.monotonic()
        if counts.first_at is None:
            counts.first_at = now
        counts.last_at = now
        counts.frames += 1
        counts.bytes += len(data)
        if codec.name == "VP8" and data and not data[0] & 1:
            counts.keyframes += 1


def install_counting_decoder() -> None:
    """Count instead of decode in every receiver started from now on (see module doc)."""
    webrtc_private.replace_decoder_worker(_counting_worker)


def uninstall_counting_decoder() -> None:
    if webrtc_private.decoder_worker() is _counting_worker:
        webrtc_private.replace_decoder_worker(None)


def receive_counts(track: MediaStreamTrack) -> ReceiveCounts:
    """Counts for a received track (zeros before its receiver starts or without the counter)."""
    queue = webrtc_private.remote_track_queue(track)
    counts = getattr(queue, _COUNTS_ATTR, None)
    return counts if counts is not None else ReceiveCounts()


def opus_encoder(bitrate: int = 32_000, *, fec: bool = True, expected_loss: int = 10
                 ) -> OpusEncoder:
    """aiortc's Opus encoder at ``bitrate`` (mono), with in-band FEC: a lost 20 ms packet can
    be rebuilt by the receiver from the next one. ``expected_loss`` (%) is what libopus
    spends the FEC budget for. Install it with ``webrtc_private.set_sender_encoder`` before
    the sender starts."""
    if not 6_000 <= bitrate <= 510_000:
        raise ValueError(f"Opus bitrate {bitrate} is outside 6-510 kbit/s")
    encoder = OpusEncoder()
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = bitrate
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = AUDIO_RATE
    codec.time_base = AUDIO_TIME_BASE
    options = {"application": "voip"}
    if fec:
        options.update(fec="1", packet_loss=str(max(1, min(expected_loss, 100))))
    codec.options = options
    encoder.codec = codec
    encoder.resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE,
                                          frame_size=960)
    return encoder


def receive_codecs(name: str) -> list[Any]:
    """The receiver's video capabilities for ``setCodecPreferences`` holding only ``name``
    (``"vp8"`` or ``"h264"``; H.264 as old TV boxes offer it: constrained baseline
    ``42e01f``, packetization-mode 1) plus RTX."""
    from aiortc import RTCRtpReceiver
    from aiortc.codecs import is_rtx

    name = name.lower()
    if name not in ("vp8", "h264"):
        raise ValueError(f"video codec must be vp8 or h264, not {name!r}")
    chosen = [c for c in RTCRtpReceiver.getCapabilities("video").codecs
              if c.mimeType.lower() == f"video/{name}"
              and (name != "h264" or (c.parameters.get("profile-level-id") == "42e01f"
                                      and c.parameters.get("packetization-mode") == "1"))]
    return chosen + [c for c in RTCRtpReceiver.getCapabilities("video").codecs if is_rtx(c)]
