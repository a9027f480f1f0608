"""One encoder, many senders: synthetic camera and microphone for load tests with many uplinks.

Thirty aiortc peers that each encode their own 360p VP8 would measure the load
generator, not the server. :class:`SharedEncodedSource` encodes one synthetic picture
stream and one Opus tone once (PyAV, in an executor) and hands the same ``av.Packet`` to
every :class:`EncodedTrack`; aiortc's sender then only packetizes (``encoder.pack``) and
encrypts, like a browser that sends what its hardware encoder made. A PLI from the server
on any sender asks the shared encoder for a keyframe (rate-limited), as a browser would.

:class:`LoopedEncodedSource` goes one step further for sources whose live encode would
itself load the machine (a 1280x720 teacher costs ~0.3-0.4 of a core in libvpx): it
encodes a few seconds once, before the measurement, and replays those packets with fresh
timestamps. A keyframe request is answered with the current frame's intra-coded twin,
encoded in the same pass, so PLIs still get a keyframe within one frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections import deque

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from media_relay import webrtc_private

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
KEYFRAME_MIN_INTERVAL = 1.0
"""One encoder feeds every uplink: a PLI from any of them forces a keyframe on all, so
keyframes are spaced more than a browser would (else the uplinks go over their cap)."""


class EncodedTrack(MediaStreamTrack):
    """A sender's view of the shared source: a short queue of shared packets."""

    def __init__(self, kind: str, source: SharedEncodedSource) -> None:
        super().__init__()
        self.kind = kind
        self.source = source
        """The source feeding this track now (see SharedEncodedSource.move)."""
        self._packets: deque[av.Packet] = deque(maxlen=64)
        self._ready = asyncio.Event()
        self.want_keyframe = False
        """Its next frame must be a keyframe (LoopedEncodedSource.keyframe_for: a PLI, or
        the track moved there)."""

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
        self.source._forget(self)


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
        track = EncodedTrack(kind, self)
        self._tracks[kind].append(track)
        return track

    def attach_sender(self, sender: RTCRtpSender) -> None:
        """Route the sender's PLI/FIR to the encoder feeding its track now (aiortc's own
        would be ignored)."""
        track = sender.track
        webrtc_private.replace_keyframe_handler(
            sender, lambda: track.source.keyframe_for(track))

    def keyframe_for(self, track: EncodedTrack) -> None:
        """One sender's PLI (or a track moved here): the shared encoder's next frame is a
        keyframe, for all."""
        self.request_keyframe()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._force_keyframe = True

    def move(self, track: EncodedTrack, to: SharedEncodedSource) -> None:
        """Feed ``track`` from ``to`` from now on, starting with a keyframe (a page that
        switches its camera's size, e.g. thumbnail -> full size when called on stage)."""
        self._forget(track)
        track.source = to
        to._tracks[track.kind].append(track)
        to.keyframe_for(track)

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


class ReplayedPacket:
    """What aiortc's ``encoder.pack`` reads from a pre-encoded packet: bytes, pts, time base.
    Cheaper than an ``av.Packet`` per frame, and shared by every sender like one."""

    __slots__ = ("data", "pts", "time_base")

    def __init__(self, data: bytes, pts: int) -> None:
        self.data, self.pts, self.time_base = data, pts, VIDEO_TIME_BASE

    def __bytes__(self) -> bytes:
        return self.data


class LoopedEncodedSource(SharedEncodedSource):
    """:class:`SharedEncodedSource` whose video is encoded once, ``loop_seconds`` of it,
    by :meth:`prepare`, then replayed in a loop (audio stays live: Opus is cheap)."""

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30,
                 bitrate: int = 1_500_000, loop_seconds: float = 4.0) -> None:
        super().__init__(width, height, fps, bitrate, gop_seconds=loop_seconds)
        self._loop_frames = max(1, int(round(loop_seconds * fps)))
        self._delta: list[bytes] = []
        self._intra: list[bytes] = []

    def keyframe_for(self, track: EncodedTrack) -> None:
        """One sender's PLI: that sender alone gets the next frame's intra twin, at once,
        as one browser answers its own PLI (the others' streams are untouched)."""
        track.want_keyframe = True

    async def prepare(self) -> None:
        """Encode the loop (seconds of CPU for 720p: do it before measuring anything)."""
        if not self._delta:
            loop = asyncio.get_running_loop()
            self._delta, self._intra = await loop.run_in_executor(None, self._encode_loop)

    def _encode_loop(self) -> tuple[list[bytes], list[bytes]]:
        intra = av.CodecContext.create("libvpx", "w")
        intra.width, intra.height, intra.pix_fmt = self.width, self.height, "yuv420p"
        intra.time_base = VIDEO_TIME_BASE
        intra.bit_rate = self._video.bit_rate
        intra.thread_count = 1
        intra.options = {**self._video.options, "kf-max-dist": "1"}
        pictures = SyntheticVideoTrack(self.width, self.height, self.fps)._patterns
        step = int(90000 / self.fps)
        delta: list[bytes] = []
        keys: list[bytes] = []
        for n in range(self._loop_frames):
            picture: np.ndarray = pictures[n % len(pictures)]
            for codec, out, key in ((self._video, delta, n == 0), (intra, keys, True)):
                frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
                frame.pts, frame.time_base = n * step, VIDEO_TIME_BASE
                if key:
                    frame.pict_type = av.video.frame.PictureType.I
                packets = list(codec.encode(frame))
                if len(packets) != 1:
                    raise RuntimeError("libvpx buffered a frame: lag-in-frames must be 0")
                out.append(bytes(packets[0]))
        return delta, keys

    async def _run_video(self) -> None:
        await self.prepare()
        step = int(90000 / self.fps)
        start = time.monotonic()
        n = 0
        while True:
            wait = start + n / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            index = n % self._loop_frames
            data = self._delta[index]
            now = time.monotonic()
            if (index and self._force_keyframe
                    and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL):
                data = self._intra[index]
                self._force_keyframe = False
            if index == 0 or data is self._intra[index]:
                self._last_keyframe = now
            packet = ReplayedPacket(data, n * step)
            self.frames += 1
            for track in list(self._tracks["video"]):
                if track.want_keyframe:  # moved here or its PLI: its own keyframe, now
                    track.want_keyframe = False
                    if data is not self._intra[index] and index:
                        track.push(ReplayedPacket(self._intra[index], n * step))
                        continue
                track.push(packet)
            n += 1
