"""A lesson's video ladder: decode the teacher's video once, encode once per tier in use.

The publisher's encoded VP8/H264 frames go to the lesson's :class:`VideoSource`, whose
thread decodes every one of them and hands each decoded frame to the :class:`Rendition` of
every tier in use; each rendition's own thread scales the newest frame (PyAV ``reformat``)
and encodes it (PyAV libvpx, realtime, at the tier's rate and frame rate; or libx264 for
an H.264 rendition, :mod:`.h264`, run only while an H.264-only classroom is on that tier,
see :mod:`.feed`). The VP8 top tier is
encoded whenever the publisher's media flows, watched or not (the recorder attaches to it;
a joiner gets a forced keyframe); a lower tier only while at least one subscriber is on it.
The event loop is touched once per encoded frame, to hand the shared packet to every
subscriber of that tier. All tiers share one output timeline (the source's timestamps
mapped once), so a subscriber moved between tiers keeps a continuous RTP timestamp.
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
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from . import capture_clock, h264, metrics, webrtc_private
from .config import RelayConfig
from .ladder_spec import TierSpec
from .packets import VIDEO_CLOCK, VIDEO_TIME_BASE, PacketMeta, Timeline, make_packet
from .tracks import Sink, add_sink, fan_out

logger = logging.getLogger(__name__)

_DECODERS = {"VP8": "libvpx", "H264": "h264"}
_BACKLOG_LIMIT = 60
"""Source frames waiting for the decoder thread (2 s): beyond that, drop them and ask for a
keyframe."""
_RENDITION_BACKLOG = 4
"""Decoded frames waiting for a rendition's encoder, at most (each 1.4 MB at 720p)."""


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The source size capped to ``max_width`` x ``max_height``, aspect kept, even numbers."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class Decoded:
    """One decoded source frame shared by the renditions (read-only but for ``lock``)."""

    __slots__ = ("frame", "ingress", "lock", "pts", "source")

    def __init__(self, frame: av.VideoFrame, pts: int, ingress: float, source: int) -> None:
        self.frame = frame
        self.pts = pts
        """On the lesson's output timeline (1/90000 s), the same for every tier."""
        self.ingress = ingress
        self.source = source
        self.lock = threading.Lock()
        """Held by a rendition that encodes the frame itself (no scaling: same object)."""


class VideoSource:
    """Decodes the publisher's video once and feeds every rendition in use."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._input: queue.SimpleQueue = queue.SimpleQueue()
        self._timeline = Timeline(VIDEO_CLOCK)
        self.targets: tuple[Rendition, ...] = ()
        """Renditions fed with decoded frames (replaced whole by the event loop)."""
        self._closed = False
        self.frames_in = 0
        self.frames_decoded = 0
        self.frames_skipped = 0
        self.decode_errors = 0
        self.capture = capture_clock.CaptureMap()
        """Output timestamp -> the teacher's capture time (glass-to-glass latency)."""
        self._thread = threading.Thread(target=self._work, name="relay-video-decode",
                                        daemon=True)
        self._thread.start()

    @property
    def timeline(self) -> Timeline:
        """The feed's output line: the local decoder's frames and, on an edge, the
        origin's packets (media_relay/cascade.py) are placed on it, so a node that turns
        from edge to origin or back never sends a timestamp behind the last one."""
        return self._timeline

    def offer_encoded(self, codec_name: str, data: bytes, ingress: float, source: int,
                      timestamp: int, on_error: Callable[[], None]) -> None:
        """An encoded source frame, as it arrived (``timestamp`` in 1/90000 s)."""
        if self._closed:
            return
        self.frames_in += 1
        self._input.put((codec_name, data, ingress, source, timestamp, on_error,
                         capture_clock.delivering))

    def _work(self) -> None:
        decoder: Any = None
        decoder_key: tuple[str, int] | None = None
        wait_for_key = False
        while True:
            item = self._input.get()
            if item is None:
                break
            codec_name, data, ingress, source, timestamp, on_error, capture = item
            if (codec_name, source) != decoder_key:
                decoder = av.CodecContext.create(_DECODERS.get(codec_name, "libvpx"), "r")
                decoder.thread_count = 1  # the renditions' encoders have the other core
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
            frame = frames[-1]
            pts = self._timeline.map(source, frame.pts if frame.pts is not None else timestamp)
            self.capture.note(pts, capture)
            decoded = Decoded(frame, pts, ingress, source)
            for rendition in self.targets:
                rendition.offer_frame(decoded)

    def _post(self, callback: Callable[..., None], *args: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.targets = ()
        self._input.put(None)
        deadline = time.monotonic() + 2.0
        while self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def stats(self) -> dict:
        return {"frames_in": self.frames_in, "frames_decoded": self.frames_decoded,
                "frames_skipped": self.frames_skipped, "decode_errors": self.decode_errors}


class Rendition:
    """Encodes the lesson's current source once for its tier and fans the packets out.

    Keyframes: when someone joins or switches to this tier, on PLI/FIR and queue overflow
    (no closer together than ``keyframe_min_gap``, never lost), when the source changes,
    and every ``keyframe_interval`` seconds. It encodes the newest decoded frame it was
    given (older ones waiting are skipped), no more often than the tier's frame rate.

    Sinks are anything with ``push(packet)``: an :class:`~.rtpout.RtpStream` (written at
    once) or a :class:`~.tracks.PacketTrack` (queued for an aiortc sender or a reader).
    """

    counts_subscribers = True
    """False for the share and stage feeds: ``classroom_subscribers`` counts camera lines."""

    def __init__(self, config: RelayConfig, spec: TierSpec | str = "high",
                 source: VideoSource | None = None, *, top: bool = True,
                 codec: str = "VP8", always_on: bool | None = None) -> None:
        if isinstance(spec, str):
            spec = config.ladder.spec(spec)
        if codec not in ("VP8", h264.CODEC):
            raise ValueError(f"no encoder for {codec!r}")
        self.config = config
        self.spec = spec
        self.tier = spec.name
        self.top = top
        """Sized and rated as the ladder's top tier (capped to the configured maximum)."""
        self.codec = codec
        self.always_on = top if always_on is None else always_on
        """Encoded while media flows even with no sink (the VP8 top tier: the recorder)."""
        self.source = source
        self._loop = asyncio.get_running_loop()
        self._sinks: list[Sink] = []
        self._input: queue.SimpleQueue = queue.SimpleQueue()
        # keyframe requests: the loop only increments _requested, the thread only sets _served
        self._requested = 0
        self._served = 0
        self._request_reason = "join"
        self.keyframe_hook: Callable[[str], None] | None = None
        """Also told of every keyframe request (an edge: its origin encodes this tier)."""
        self.frames_relayed = 0
        """Packets handed on as they came from an origin (an edge's tier: no encoder)."""
        self._closed = False
        # media thread state
        self._codec: Any = None
        self._codec_size: tuple[int, int] | None = None
        self._reformatter = VideoReformatter()
        """Its own scaler: ``frame.reformat()`` caches one on the (shared) source frame, and
        two renditions scaling the same frame at once must not share it."""
        self._picture_id = random.randint(0, (1 << 15) - 1)
        self._last_keyframe = 0.0
        self._last_pts: int | None = None
        self._min_interval = int(0.9 * VIDEO_CLOCK / spec.fps) if spec.fps else 0
        self._encoded_source: int | None = None
        # stats
        self.frames_offered = 0
        self.frames_encoded = 0
        self.frames_skipped = 0
        self.frames_dropped = 0
        self.keyframes = 0
        self.bytes_out = 0
        self.encode_seconds = 0.0
        self.pipeline_seconds = 0.0
        """Sum over encoded frames of arrival -> fan-out (decode, wait, encode, loop hop)."""
        self.pipeline_max = 0.0
        self._thread = threading.Thread(
            target=self._work, name=f"relay-video-{self.tier}-{codec.lower()}", daemon=True)
        self._thread.start()

    # ---- sinks (event loop) -----------------------------------------------------------
    def attach(self, track: Sink, reason: str = "join") -> None:
        add_sink(self._sinks, track)
        if self.counts_subscribers and not getattr(track, "relay_first", False):
            metrics.SUBSCRIBERS.labels(tier=self.tier).inc()
        self.request_keyframe(reason)

    def detach(self, track: Sink) -> None:
        if track in self._sinks:
            self._sinks.remove(track)
            if self.counts_subscribers and not getattr(track, "relay_first", False):
                metrics.SUBSCRIBERS.labels(tier=self.tier).dec()

    @property
    def subscriber_count(self) -> int:
        return len(self._sinks)

    @property
    def in_use(self) -> bool:
        """Encoded: the top tier always (while media flows), another while watched."""
        return self.always_on or bool(self._sinks)

    # ---- input ------------------------------------------------------------------------
    @property
    def timeline(self) -> Timeline:
        """The feed's output line: the local decoder's frames and, on an edge, the
        origin's packets (media_relay/cascade.py) are placed on it, so a node that turns
        from edge to origin or back never sends a timestamp behind the last one."""
        return self._timeline

    def offer_encoded(self, codec_name: str, data: bytes, ingress: float, source: int,
                      timestamp: int, on_error: Callable[[], None]) -> None:
        """Compatibility: an encoded source frame goes to this rendition's source."""
        if self.source is not None:
            self.source.offer_encoded(codec_name, data, ingress, source, timestamp, on_error)

    def offer_frame(self, decoded: Decoded) -> None:
        """A decoded source frame (decoder thread)."""
        if self._closed:
            return
        self.frames_offered += 1
        if self._input.qsize() >= _RENDITION_BACKLOG:  # the encoder is behind: it would
            self.frames_dropped += 1                   # skip to the newest frame anyway
            return
        self._input.put(decoded)

    def request_keyframe(self, reason: str) -> None:
        """Ask for a keyframe soon (rate-limited by ``keyframe_min_gap``, never dropped)."""
        self._request_reason = reason
        self._requested += 1
        if self.keyframe_hook is not None:
            self.keyframe_hook(reason)

    # ---- media thread -------------------------------------------------------------------
    def bitrate_for(self, width: int, height: int) -> int:
        """The tier's rate; a top tier capped at a small source keeps the configured rate
        for up to 480 lines (``RelayConfig.video_bitrate``) if that is lower."""
        rate = self.spec.video_bitrate
        if self.top and height <= 480:
            rate = min(rate, self.config.video_bitrate)
        return rate

    def _open_codec(self, width: int, height: int) -> None:
        if self.codec == h264.CODEC:
            self._codec = h264.open_encoder(width, height, round(self.spec.fps) or 30,
                                            self.bitrate_for(width, height),
                                            self.config.encoder_threads or 1)
            self._codec_size = (width, height)
            return
        codec = av.CodecContext.create("libvpx", "w")
        codec.width = width
        codec.height = height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = round(self.spec.fps) or 30
        bitrate = self.bitrate_for(width, height)
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
        # one thread: libvpx's VP8 threads spin-wait on each other, and on 2 busy cores a 720p
        # frame cost 114 ms of CPU with 2 threads against 9 ms with 1 (measured, loaded
        # machine); one thread encodes 720p at 30 fps in ~30 % of a core
        codec.thread_count = self.config.encoder_threads or 1
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

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        max_w, max_h = self.spec.width, self.spec.height
        if self.top:
            max_w, max_h = min(max_w, self.config.max_width), min(max_h, self.config.max_height)
        return fit_size(width, height, max_w, max_h)

    def _encode(self, decoded: Decoded) -> av.Packet | None:
        start = time.perf_counter()
        now = time.monotonic()
        frame = decoded.frame
        size = self.target_size(frame.width, frame.height)
        if (frame.width, frame.height) != size or frame.format.name != "yuv420p":
            frame = self._reformatter.reformat(frame, width=size[0], height=size[1],
                                               format="yuv420p")
        requested = self._requested
        reason = self._keyframe_reason(now, decoded.source, size)
        if reason != "start" and self._last_pts is not None and decoded.pts <= self._last_pts:
            # the frames' time went back (seen on a node that froze and thawed): libvpx
            # refuses a pts that is not later, so a fresh encoder and a keyframe
            reason = "start"
        if reason == "start":
            self._open_codec(*size)
        self._encoded_source = decoded.source
        pts = decoded.pts
        if frame is decoded.frame:  # shared with other renditions: set its fields under lock
            with decoded.lock:
                data = self._encode_frame(frame, pts, reason)
        else:
            data = self._encode_frame(frame, pts, reason)
        self._last_pts = pts  # the encoder refuses a pts not later than this one
        if not data:
            return None
        if self.codec == h264.CODEC:
            payloads, keyframe = h264.packetize(data)
        else:
            keyframe = not data[0] & 1  # VP8 frame tag: bit 0 clear on a keyframe
            payloads = webrtc_private.vp8_payloads(data, self._picture_id)
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
        meta = PacketMeta(payloads, pts & 0xFFFFFFFF, keyframe, decoded.ingress)
        return make_packet(data, pts, VIDEO_TIME_BASE, meta)

    def _encode_frame(self, frame: av.VideoFrame, pts: int, reason: str | None) -> bytes:
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        # a decoded frame remembers whether the source had a keyframe there: do not copy that
        frame.pict_type = PictureType.I if reason else PictureType.NONE
        return b"".join(bytes(p) for p in self._codec.encode(frame))

    def _work(self) -> None:
        while True:
            item = self._input.get()
            if item is None:
                break
            while not self._input.empty():  # encode the newest frame waiting
                newer = self._input.get_nowait()
                if newer is None:
                    return
                self.frames_skipped += 1
                item = newer
            if self._closed:
                continue
            if (self._min_interval and self._last_pts is not None
                    and item.source == self._encoded_source
                    and 0 <= item.pts - self._last_pts < self._min_interval):
                continue  # the tier's frame rate
            try:
                out = self._encode(item)
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
    def deliver(self, packet: av.Packet) -> None:
        """A packet this tier's encoder at the lesson's origin made (an edge: handed on
        as it came, no decode or encode)."""
        self.frames_relayed += 1
        self._fan_out(packet)

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
    def stop(self) -> None:
        """Detach every sink and end the encoder thread (it frees the encoder as it ends)."""
        if self._closed:
            return
        self._closed = True
        for track in list(self._sinks):
            self.detach(track)
        self._input.put(None)

    @property
    def running(self) -> bool:
        """The encoder thread is alive (False some time after :meth:`stop`)."""
        return self._thread.is_alive()

    async def close(self) -> None:
        self.stop()
        deadline = time.monotonic() + 2.0
        while self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def stats(self) -> dict:
        encoded = self.frames_encoded
        source = self.source.stats() if self.source is not None else {}
        return {
            "tier": self.tier,
            "codec": self.codec,
            "running": self.running,
            "subscribers": len(self._sinks),
            "in_use": self.in_use,
            "size": list(self._codec_size) if self._codec_size else None,
            "bitrate": self.bitrate_for(*self._codec_size) if self._codec_size
            else self.spec.video_bitrate,
            "frames_in": source.get("frames_in", 0),
            "frames_decoded": source.get("frames_decoded", 0),
            "decode_errors": source.get("decode_errors", 0),
            "frames_offered": self.frames_offered,
            "frames_encoded": encoded,
            "frames_skipped": self.frames_skipped + self.frames_dropped
            + source.get("frames_skipped", 0),
            "keyframes": self.keyframes,
            "frames_relayed": self.frames_relayed,
            "bytes_out": self.bytes_out,
            "encode_ms_avg": round(1000 * self.encode_seconds / encoded, 3) if encoded else None,
            "pipeline_ms_avg": round(1000 * self.pipeline_seconds / encoded, 3)
            if encoded else None,
            "pipeline_ms_max": round(1000 * self.pipeline_max, 3),
        }
