"""One encoder, many senders: synthetic camera and microphone for load tests with many uplinks.

Thirty aiortc peers that each encode their own 360p VP8 would measure the load
generator, not the server. :class:`SharedEncodedSource` encodes one synthetic picture
stream and one Opus tone once (PyAV, in an executor) and hands the same ``av.Packet`` to
every :class:`EncodedTrack`; aiortc's sender then only packetizes (``encoder.pack``) and
encrypts, like a browser that sends what its hardware encoder made. A PLI from the server
on any sender asks the shared encoder for a keyframe (rate-limited), as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections import deque

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
KEYFRAME_MIN_INTERVAL = 1.0
"""One encoder feeds every uplink: a PLI from any of them forces a keyframe on all, so
keyframes are spaced more than a browser would (else the uplinks go over their cap)."""


class EncodedTrack(MediaStreamTrack):
    """A sender's view of the shared source: a short queue of shared packets."""

    def __init__(self, kind: str, on_closed: callable) -> None:
        super().__init__()
        self.kind = kind
        self._packets: deque[av.Packet] = deque(maxlen=64)
        self._ready = asyncio.Event()
        self._on_closed = on_closed

    def push(self, packet: av.Packet) -> None:
        self._packets.append(packet)
        self._ready.set()

    async def recv(self) -> av.Packet:
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()
        self._on_closed(self)


class SharedEncodedSource:
    """Encodes ``width``x``height`` VP8 and Opus once; every track gets the same packets."""

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30,
                 bitrate: int = 300_000, gop_seconds: float = 4.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._video = av.CodecContext.create("libvpx", "w")
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = VIDEO_TIME_BASE
        self._video.bit_rate = bitrate
        self._video.thread_count = 1  # libvpx's worker threads spin-wait on busy cores
        self._video.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                               "error-resilient": "1"}
        self._audio = av.CodecContext.create("libopus", "w")
        self._audio.sample_rate = 48000
        self._audio.layout = "mono"
        self._audio.format = "s16"
        self._audio.bit_rate = 32000
        self._gop = gop_seconds
        self._tracks: dict[str, list[EncodedTrack]] = {"video": [], "audio": []}
        self._tasks: list[asyncio.Task] = []
        self._force_keyframe = True
        self._last_keyframe = 0.0
        self.keyframe_requests = 0
        self.frames = 0

    def track(self, kind: str) -> EncodedTrack:
        track = EncodedTrack(kind, self._forget)
        self._tracks[kind].append(track)
        return track

    def attach_sender(self, sender: RTCRtpSender) -> None:
        """Route the sender's PLI/FIR to the shared encoder (aiortc's would be ignored)."""
        sender._send_keyframe = self.request_keyframe  # type: ignore[method-assign]

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._force_keyframe = True

    def _forget(self, track: EncodedTrack) -> None:
        with contextlib.suppress(ValueError):
            self._tracks[track.kind].remove(track)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run_video(), name="shared-video"),
                       loop.create_task(self._run_audio(), name="shared-audio")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for tracks in self._tracks.values():
            for track in list(tracks):
                track.stop()

    def _encode_video(self, frame: av.VideoFrame) -> list[av.Packet]:
        now = time.monotonic()
        due = now - self._last_keyframe >= self._gop
        if (self._force_keyframe and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL) or due:
            frame.pict_type = av.video.frame.PictureType.I
            self._force_keyframe = False
            self._last_keyframe = now
        return list(self._video.encode(frame))

    async def _run_video(self) -> None:
        source = SyntheticVideoTrack(self.width, self.height, self.fps)
        loop = asyncio.get_running_loop()
        while True:
            frame = await source.recv()
            packets = await loop.run_in_executor(None, self._encode_video, frame)
            for packet in packets:
                packet.time_base = VIDEO_TIME_BASE
                self.frames += 1
                for track in list(self._tracks["video"]):
                    track.push(packet)

    async def _run_audio(self) -> None:
        source = SyntheticAudioTrack()
        while True:
            frame = await source.recv()
            for packet in self._audio.encode(frame):
                packet.time_base = AUDIO_TIME_BASE
                for track in list(self._tracks["audio"]):
                    track.push(packet)
