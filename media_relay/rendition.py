"""One encoded video tier of a lesson: decode and encode once, packetize once, share the packets.

The publisher's encoded VP8/H264 frames go straight into this rendition's media thread,
which decodes every one of them and encodes the newest (PyAV libvpx, realtime) while the
publisher's media flows, watched or not (every lesson has a recorder subscriber, so the top
tier is always watched in the product; a joiner gets a forced keyframe); the event loop is
touched once per encoded frame, to hand the shared packet to every subscriber. (One thread
doing decode + encode, instead of aiortc's decoder thread -> event loop -> encoder thread ->
event loop: under load every hop through a busy event loop costs a full loop iteration.)
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.codecs.vpx import Vp8Encoder
from av.video.frame import PictureType

from . import metrics
from .config import RelayConfig
from .packets import VIDEO_CLOCK, VIDEO_TIME_BASE, PacketMeta, Timeline, make_packet
from .tracks import Sink, fan_out

logger = logging.getLogger(__name__)

_DECODERS = {"VP8": "libvpx", "H264": "h264"}
_BACKLOG_LIMIT = 60
"""Source frames waiting for the media thread (2 s): beyond that, drop them and ask for a
keyframe."""


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The source size capped to ``max_width`` x ``max_height``, aspect kept, even numbers."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class Rendition:
    """Encodes the lesson's current source once for its tier and fans the packets out.

    Keyframes: when someone joins, on PLI/FIR and queue overflow (no closer together than
    ``keyframe_min_gap``, never lost), when the source changes, and every
    ``keyframe_interval`` seconds. Every source frame is decoded; the newest is encoded
    whether anyone watches or not. No publisher media: nothing is decoded or encoded.

    Sinks are anything with ``push(packet)``: an :class:`~.rtpout.RtpStream` (written at
    once) or a :class:`~.tracks.PacketTrack` (queued for an aiortc sender or a reader).
    """

    def __init__(self, config: RelayConfig, tier: str = "high") -> None:
        self.config = config
        self.tier = tier
        self._loop = asyncio.get_running_loop()
        self._sinks: list[Sink] = []
        self._input: queue.SimpleQueue = queue.SimpleQueue()
        # keyframe requests: the loop only increments _requested, the thread only sets _served
        self._requested = 0
        self._served = 0
        self._request_reason = "join"
        self._closed = False
        # media thread state
        self._codec: Any = None
        self._codec_size: tuple[int, int] | None = None
        self._picture_id = random.randint(0, (1 << 15) - 1)
        self._timeline = Timeline(VIDEO_CLOCK)
        self._last_keyframe = 0.0
        self._encoded_source: int | None = None
        # stats
        self.frames_in = 0
        self.frames_decoded = 0
        self.frames_encoded = 0
        self.frames_skipped = 0
        self.decode_errors = 0
        self.keyframes = 0
        self.bytes_out = 0
        self.encode_seconds = 0.0
        self.pipeline_seconds = 0.0
        """Sum over encoded frames of arrival -> fan-out (decode, wait, encode, loop hop)."""
        self.pipeline_max = 0.0
        self._thread = threading.Thread(target=self._work, name=f"relay-video-{tier}",
                                        daemon=True)
        self._thread.start()

    # ---- sinks (event loop) -----------------------------------------------------------
    def attach(self, track: Sink) -> None:
        self._sinks.append(track)
        metrics.SUBSCRIBERS.labels(tier=self.tier).inc()
        self.request_keyframe("join")

    def detach(self, track: Sink) -> None:
        if track in self._sinks:
            self._sinks.remove(track)
            metrics.SUBSCRIBERS.labels(tier=self.tier).dec()

    @property
    def subscriber_count(self) -> int:
        return len(self._sinks)

    # ---- input (event loop) -----------------------------------------------------------
    def offer_encoded(self, codec_name: str, data: bytes, ingress: float, source: int,
                      timestamp: int, on_error: Callable[[], None]) -> None:
        """An encoded source frame, as it arrived (``timestamp`` in 1/90000 s)."""
        if self._closed:
            return
        self.frames_in += 1
        self._input.put((codec_name, data, ingress, source, timestamp, on_error))

    def request_keyframe(self, reason: str) -> None:
        """Ask for a keyframe soon (rate-limited by ``keyframe_min_gap``, never dropped)."""
        self._request_reason = reason
        self._requested += 1

    # ---- media thread -------------------------------------------------------------------
    def _open_codec(self, width: int, height: int) -> None:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width = width
        codec.height = height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = 30
        bitrate = self.config.video_bitrate if height <= 480 else self.config.video_bitrate_hd
        codec.bit_rate = bitrate
        codec.gop_size = 3000  # keyframes are forced by the rendition
        codec.qmin = 2
        codec.qmax = 56
        codec.options = {
            "deadline": "realtime",
            "cpu-used": str(self.config.encoder_cpu_used),
            "lag-in-frames": "0",
            "bufsize": str(bitrate),
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "static-thresh": "1",
            "partitions": "0",
            "noise-sensitivity": "0",
            "error-resilient": "1",
            # cap a keyframe at ~3 average frames: a smaller burst to every subscriber at once
            "max-intra-rate": str(self.config.max_intra_rate),
        }
        codec.thread_count = self.config.encoder_threads or (
            1 if width * height <= 640 * 480 else 2)
        self._codec = codec
        self._codec_size = (width, height)

    def _keyframe_reason(self, now: float, source: int, size: tuple[int, int]) -> str | None:
        if self._codec is None or self._codec_size != size:
            return "start"
        if source != self._encoded_source:
            return "source"
        gap = now - self._last_keyframe
        if self._requested != self._served and gap >= self.config.keyframe_min_gap:
            return self._request_reason
        if now - self._last_keyframe >= self.config.keyframe_interval:
            return "periodic"
        return None

    def _encode(self, frame: av.VideoFrame, ingress: float, source: int) -> av.Packet | None:
        start = time.perf_counter()
        now = time.monotonic()
        size = fit_size(frame.width, frame.height, self.config.max_width, self.config.max_height)
        if (frame.width, frame.height) != size or frame.format.name != "yuv420p":
            frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        requested = self._requested
        reason = self._keyframe_reason(now, source, size)
        if reason == "start":
            self._open_codec(*size)
        self._encoded_source = source
        pts = self._timeline.map(source, frame.pts if frame.pts is not None else
                                 int(now * VIDEO_CLOCK))
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        # a decoded frame remembers whether the source had a keyframe there: do not copy that
        frame.pict_type = PictureType.I if reason else PictureType.NONE
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        if not data:
            return None
        keyframe = not data[0] & 1  # VP8 frame tag: bit 0 clear on a keyframe
        payloads = Vp8Encoder._packetize(data, self._picture_id)
        self._picture_id = (self._picture_id + 1) % (1 << 15)
        if keyframe:
            self._last_keyframe = now
            self._served = requested
            self.keyframes += 1
            metrics.KEYFRAMES.labels(reason=reason or "encoder").inc()
        seconds = time.perf_counter() - start
        self.frames_encoded += 1
        self.bytes_out += len(data)
        self.encode_seconds += seconds
        metrics.ENCODE_SECONDS.observe(seconds)
        meta = PacketMeta(payloads, pts & 0xFFFFFFFF, keyframe, ingress)
        return make_packet(data, pts, VIDEO_TIME_BASE, meta)

    def _work(self) -> None:
        decoder: Any = None
        decoder_key: tuple[str, int] | None = None
        wait_for_key = False
        while True:
            item = self._input.get()
            if item is None:
                break
            codec_name, data, ingress, source, timestamp, on_error = item
            if (codec_name, source) != decoder_key:
                decoder = av.CodecContext.create(_DECODERS.get(codec_name, "libvpx"), "r")
                decoder_key = (codec_name, source)
            backlog = self._input.qsize()
            if backlog > _BACKLOG_LIMIT:  # far behind: start again from the next source keyframe
                for _ in range(backlog):
                    if self._input.get_nowait() is None:
                        return
                self.frames_skipped += backlog
                metrics.DROPPED_VIDEO.inc(backlog)
                wait_for_key = codec_name == "VP8"
                if not self._post(on_error):
                    break
                continue
            if wait_for_key:
                if data and data[0] & 1:
                    continue
                wait_for_key = False
            packet = av.Packet(data)
            packet.pts = timestamp
            packet.time_base = VIDEO_TIME_BASE
            try:
                frames = decoder.decode(packet)
            except av.FFmpegError:
                self.decode_errors += 1
                if not self._post(on_error):  # PLI to the teacher
                    break
                continue
            if not frames:
                continue
            self.frames_decoded += len(frames)
            if self._closed:
                continue
            if not self._input.empty():
                self.frames_skipped += 1  # a newer frame is already waiting: encode that one
                continue
            try:
                out = self._encode(frames[-1], ingress, source)
            except Exception:
                logger.exception("rendition %s: encoding failed", self.tier)
                self._codec = None
                continue
            if out is not None and not self._post(self._fan_out, out):
                break
        self._codec = None

    def _post(self, callback: Callable[..., None], *args: Any) -> bool:
        """Run ``callback`` in the event loop; False once the loop is gone."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    # ---- output (event loop) ----------------------------------------------------------
    def _fan_out(self, packet: av.Packet) -> None:
        if self._closed:
            return
        now = time.monotonic()
        packet.opaque.fanout = now  # before anyone sees it
        fan_out(self._sinks, packet)
        pipeline = now - packet.opaque.ingress
        self.pipeline_seconds += pipeline
        self.pipeline_max = max(self.pipeline_max, pipeline)

    # ---- lifetime ----------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for track in list(self._sinks):
            self.detach(track)
        self._input.put(None)
        deadline = time.monotonic() + 2.0
        while self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def stats(self) -> dict:
        encoded = self.frames_encoded
        return {
            "tier": self.tier,
            "subscribers": len(self._sinks),
            "size": list(self._codec_size) if self._codec_size else None,
            "frames_in": self.frames_in,
            "frames_decoded": self.frames_decoded,
            "frames_encoded": encoded,
            "frames_skipped": self.frames_skipped,
            "decode_errors": self.decode_errors,
            "keyframes": self.keyframes,
            "bytes_out": self.bytes_out,
            "encode_ms_avg": round(1000 * self.encode_seconds / encoded, 3) if encoded else None,
            "pipeline_ms_avg": round(1000 * self.pipeline_seconds / encoded, 3)
            if encoded else None,
            "pipeline_ms_max": round(1000 * self.pipeline_max, 3),
        }
