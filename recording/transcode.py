"""Transcoding pieces the packager is built from: decode the recording, encode H.264 and AAC.

Everything works with PyAV (no ffmpeg binary). The recording is VP8 + Opus in WebM
segments; replay wants H.264 + AAC (Safari/iOS and hardware decoders on phones and TVs).

* :func:`decoded` decodes one kind across segments with one decoder (a corrupt segment is
  skipped, the rest still decodes);
* :func:`decode_pcm` decodes a piece of the lesson's audio to mono PCM on the recording's
  timeline, and :func:`loudness_blocks` measures what the loudness normalisation needs
  (pydub: mean square of 400 ms blocks, the peak) so the measure is taken piece by piece
  and the gain (:func:`gain_from_blocks`) decided once the whole lesson is known;
* :class:`VideoOut` encodes one rung of the ladder into an intermediate Matroska file:
  no B-frames, so intermediates of consecutive pieces of a lesson concatenate with
  monotonic timestamps, and keyframes where the caller asks (the same instants in every
  rung);
* :func:`encode_aac` applies the gain with pydub and encodes AAC once for every rung.
"""

from __future__ import annotations

import fractions
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

with warnings.catch_warnings():  # pydub warns when no ffmpeg binary is found: not needed here
    warnings.simplefilter("ignore", RuntimeWarning)
    from pydub import AudioSegment

MS = fractions.Fraction(1, 1000)
BLOCK_MS = 400


@dataclass
class Rung:
    name: str
    height: int
    bitrate: int
    fps: float


@dataclass
class PackagerConfig:
    ladder: list[Rung] = field(default_factory=lambda: [
        Rung("720p", 720, 1_800_000, 30),
        Rung("360p", 360, 700_000, 30),
        Rung("180p", 180, 180_000, 15),
    ])
    """Rungs taller than the recording are skipped (the top rung is the recording's size)."""
    hls_time: float = 4.0
    keyframe_seconds: float = 2.0
    audio_bitrate: int = 64_000
    target_dbfs: float = -20.0
    """Gated RMS loudness target (about -16..-18 LUFS for speech)."""
    max_gain_db: float = 20.0
    thumbnail_every: float = 10.0
    thumbnail_width: int = 160
    poster_width: int = 640
    preset: str = "superfast"
    """x264 preset: superfast is ~25 % faster than veryfast at about the same size here."""
    threads: int = 0
    chunk_seconds: float = 60.0
    """The lesson is transcoded in pieces this long (while it is recorded, see chunks.py)."""


class PackagingError(Exception):
    pass


# ---- decoding ------------------------------------------------------------------------------
def demux(paths: list[Path], kind: str) -> Iterator[tuple[Any, av.Packet]]:
    """Packets of one kind from every segment in order; a corrupt segment is skipped."""
    for path in paths:
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError):
            continue
        with container:
            streams = container.streams.video if kind == "video" else container.streams.audio
            if not streams:
                continue
            stream = streams[0]
            try:
                for packet in container.demux(stream):
                    if packet.size and packet.pts is not None:
                        yield stream, packet
            except (av.FFmpegError, OSError):
                continue


def decoded(paths: list[Path], kind: str) -> Iterator[tuple[int, Any]]:
    """Decoded frames with their time in ms; one decoder across segments (one stream)."""
    codec = None
    for _stream, packet in demux(paths, kind):
        if codec is None:
            codec = av.CodecContext.create("libvpx" if kind == "video" else "libopus", "r")
            if kind == "audio":
                codec.sample_rate = 48000
                codec.layout = "stereo"
        ms = int(packet.pts * packet.time_base * 1000)
        try:
            frames = codec.decode(packet)
        except (av.FFmpegError, ValueError):
            continue
        for frame in frames:
            yield ms, frame


# ---- audio ---------------------------------------------------------------------------------
def decode_pcm(paths: list[Path], offset_ms: int) -> tuple[int, np.ndarray]:
    """The audio of ``paths`` as mono s16 PCM on the recording's timeline.

    Returns ``(first sample, samples)``: sample 0 is the recording's start (``offset_ms``);
    a hole inside (a write error, a pause) is filled with silence.
    """
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    parts: list[np.ndarray] = []
    first: int | None = None
    next_sample = 0
    for ms, frame in decoded(paths, "audio"):
        start = (ms - offset_ms) * 48
        if first is None:
            first = next_sample = max(0, start)
        for f in resampler.resample(frame):
            pcm = f.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            if start > next_sample + 4800:  # more than 100 ms missing: silence
                parts.append(np.zeros(start - next_sample, np.int16))
                next_sample = start
            parts.append(pcm)
            next_sample += pcm.size
    if first is None:
        return 0, np.zeros(0, np.int16)
    return first, np.concatenate(parts)


def loudness_blocks(pcm: np.ndarray) -> dict[str, Any]:
    """Mean square of each 400 ms block (pydub RMS) and the peak sample of ``pcm``."""
    if not pcm.size:
        return {"blocks": [], "peak": 0}
    seg = AudioSegment(data=pcm.tobytes(), sample_width=2, frame_rate=48000, channels=1)
    blocks = [float(seg[i:i + BLOCK_MS].rms) ** 2
              for i in range(0, len(seg) - BLOCK_MS + 1, BLOCK_MS)]
    return {"blocks": blocks, "peak": int(seg.max)}


def gain_from_blocks(blocks: list[float], peak: int, cfg: PackagerConfig) -> dict[str, float]:
    """Gain (dB) that brings the gated loudness to the target, peak-limited.

    A BS.1770-style two-stage gate without the K filter: blocks under -70 dBFS are
    silence, then blocks 10 dB under the mean of the rest are dropped.
    """
    full = float(1 << 15)
    gated = [b for b in blocks if b > (full * 10 ** (-70 / 20)) ** 2]
    if not gated:
        return {"gain_db": 0.0, "loudness_dbfs": -math.inf, "peak_dbfs": -math.inf}
    mean = sum(gated) / len(gated)
    relative = [b for b in gated if b > mean * 10 ** (-10 / 10)] or gated
    loudness = 10 * math.log10(sum(relative) / len(relative) / full ** 2)
    peak_db = 20 * math.log10(peak / full) if peak else -math.inf
    gain = min(cfg.target_dbfs - loudness, -1.0 - peak_db, cfg.max_gain_db)
    return {"gain_db": round(gain, 2), "loudness_dbfs": round(loudness, 2),
            "peak_dbfs": round(peak_db, 2)}


def encode_aac(pieces: Iterator[tuple[int, np.ndarray]], out_path: Path, gain_db: float,
               cfg: PackagerConfig, result: dict[str, Any]) -> None:
    """One AAC stream from PCM pieces in order, the gain applied with pydub.

    ``pieces`` are ``(first sample, samples)``; a gap between pieces becomes silence and
    an overlap is trimmed. Runs in a thread: ``result`` gets ``samples`` or ``error``.
    """
    try:
        out = av.open(str(out_path), "w", format="matroska")
        # the fast coder: ~40 % less CPU than the default two-loop search, same rate
        stream = out.add_stream("aac", rate=48000, layout="mono",
                                options={"aac_coder": "fast"})
        stream.bit_rate = cfg.audio_bitrate
        next_sample: int | None = None
        samples = 0

        def emit(pcm: np.ndarray) -> None:
            nonlocal next_sample, samples
            for i in range(0, pcm.size, 48000):  # 1 s frames: few calls into the encoder
                block = np.ascontiguousarray(pcm[i:i + 48000]).reshape(1, -1)
                f = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
                f.sample_rate = 48000
                f.pts = next_sample
                f.time_base = fractions.Fraction(1, 48000)
                assert next_sample is not None
                next_sample += block.shape[1]
                for p in stream.encode(f):
                    out.mux(p)
            samples += pcm.size

        for first, pcm in pieces:
            if next_sample is None:
                next_sample = first
            if first > next_sample:
                emit(np.zeros(first - next_sample, np.int16))
            elif first < next_sample:
                pcm = pcm[next_sample - first:]
            if not pcm.size:
                continue
            if gain_db:
                seg = AudioSegment(data=pcm.tobytes(), sample_width=2, frame_rate=48000,
                                   channels=1).apply_gain(gain_db)
                pcm = np.frombuffer(seg.raw_data, np.int16)
            emit(pcm)
        for p in stream.encode(None):
            out.mux(p)
        out.close()
        result["samples"] = samples
    except Exception as exc:  # noqa: BLE001 - reported to the caller's thread
        result["error"] = exc


# ---- video ---------------------------------------------------------------------------------
def even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def jpeg(frame: av.VideoFrame, width: int) -> bytes:
    """One JPEG picture (poster, thumbnail) of ``width`` pixels."""
    height = even(frame.height * width / frame.width)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = fractions.Fraction(1, 25)
    codec.options = {"qmin": "2", "qmax": "8"}
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    small.pts = 0
    return b"".join(bytes(p) for p in [*codec.encode(small), *codec.encode(None)])


def ladder(width: int, height: int, cfg: PackagerConfig) -> list[tuple[Rung, int, int]]:
    """The rungs for a recording of ``width`` x ``height``: its own size on top, then lower."""
    rungs = []
    for rung in cfg.ladder:
        if rung.height > height:
            continue
        rungs.append((rung, even(width * rung.height / height), rung.height))
    top = cfg.ladder[0]
    if not rungs or rungs[0][2] < height <= top.height:
        # the recording's own size on top (e.g. 640x360 between 720p and 360p)
        best = next((r for r in cfg.ladder if r.height <= height), cfg.ladder[-1])
        name = f"{height}p"
        if not rungs or rungs[0][0].name != name:
            rungs.insert(0, (Rung(name, height, best.bitrate, best.fps), even(width),
                             even(height)))
    return rungs


class VideoOut:
    """One rung's H.264 encoder writing an intermediate Matroska file (ms timestamps)."""

    def __init__(self, path: Path, rung: Rung, width: int, height: int,
                 cfg: PackagerConfig) -> None:
        self.rung, self.width, self.height = rung, width, height
        self.container = av.open(str(path), "w", format="matroska")
        s = self.container.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = MS
        s.codec_context.time_base = MS
        s.bit_rate = rung.bitrate
        s.codec_context.thread_count = cfg.threads
        keyint = int(cfg.keyframe_seconds * rung.fps * 4)
        s.codec_context.options = {
            "preset": cfg.preset, "profile": "main",
            "maxrate": str(int(rung.bitrate * 1.3)), "bufsize": str(rung.bitrate * 2),
            # no B-frames: pieces encoded apart concatenate with monotonic dts
            "x264-params": f"scenecut=0:keyint={keyint}:min-keyint=1:bframes=0",
        }
        self.stream = s
        self.next_due = -1.0
        self.frames = 0

    def add(self, frame: av.VideoFrame, ms: int, keyframe: bool) -> None:
        if ms < self.next_due and not keyframe:
            return  # frame rate of this rung
        self.next_due = max(self.next_due, ms) + 1000 / self.rung.fps - 1
        if (frame.width, frame.height) != (self.width, self.height):
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p") \
            if frame.format.name != "yuv420p" else frame
        out.pts = ms
        out.time_base = MS
        out.pict_type = PictureType.I if keyframe else PictureType.NONE
        for p in self.stream.encode(out):
            self.container.mux(p)
        self.frames += 1

    def close(self) -> None:
        for p in self.stream.encode(None):
            self.container.mux(p)
        self.container.close()
