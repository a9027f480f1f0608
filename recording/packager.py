"""Packaging a recording for replay: HLS ladder, audio-only rendition, MP4, pictures, chapters.

Choice: the recorded VP8 + Opus is **transcoded to H.264 (libx264) + AAC** in fMP4
HLS segments (CMAF-style; iOS 10+, hls.js; far less overhead than MPEG-TS for the
audio-only rung). Safari on iPhone/iPad plays HLS natively but not VP8 in HLS, and many old
Android phones and TVs only decode H.264 in hardware; a remux of VP8 to fMP4 would be
cheaper to make and would not play where replay matters most. The recording itself stays
VP8 + Opus (no re-encode on the live path); the transcode happens once, after the lesson,
in a child process at low priority (``nice``), so it never competes with a live lesson's
event loop.

Steps (``package(directory)``), all with PyAV (no ffmpeg binary needed):

1. audio analysis: decode the Opus once, measure the loudness with pydub (RMS of 400 ms
   blocks, silent blocks gated out, a BS.1770-style two-stage gate without the K filter)
   and choose one gain to ``target_dbfs``, limited so the loudest peak stays under -1 dBFS;
2. one decode of the video, encoded to every rung of the ladder (keyframes forced at the
   same instants in every rung, so players can switch between them at any segment), and
   the audio, gain applied with pydub, encoded once to AAC; poster and thumbnails are
   taken from the decoded pictures on the way;
3. remux (no re-encode) of the intermediates into ``hls/<rung>/index.m3u8`` (video +
   audio), ``hls/audio/index.m3u8`` (audio only: what a thin link falls back to), the
   master playlist, and ``lesson.mp4`` (the top rung, faststart) for download.

Outputs are built in ``replay.tmp/`` and renamed to ``replay/`` when complete.
Run as ``python -m recording.packager DIR`` (prints the summary as JSON).
"""

from __future__ import annotations

import argparse
import fractions
import json
import math
import os
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

with warnings.catch_warnings():  # pydub warns when no ffmpeg binary is found: not needed here
    warnings.simplefilter("ignore", RuntimeWarning)
    from pydub import AudioSegment

from .chapters import chapters_from_events, read_events, vtt_time
from .recorder import SEGMENT_DIR, SegmentInfo, read_index

MS = fractions.Fraction(1, 1000)
REPLAY_DIR = "replay"
SUMMARY_FILE = "package.json"


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


class PackagingError(Exception):
    pass


# ---- reading the recording ---------------------------------------------------------------
def _segment_paths(directory: Path, segments: list[SegmentInfo]) -> list[Path]:
    return [directory / SEGMENT_DIR / s.file for s in segments]


def _demux(paths: list[Path], kind: str):
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


def _decoded(paths: list[Path], kind: str):
    """Decoded frames with their time in ms; one decoder across segments (one stream)."""
    codec = None
    for _stream, packet in _demux(paths, kind):
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
def _to_segment(frame: av.AudioFrame, resampler: av.AudioResampler) -> list[AudioSegment]:
    out = []
    for f in resampler.resample(frame):
        out.append(AudioSegment(data=f.to_ndarray().tobytes(), sample_width=2,
                                frame_rate=48000, channels=1))
    return out


def measure_gain(paths: list[Path], cfg: PackagerConfig) -> dict[str, float]:
    """Gain (dB) that brings the gated loudness to the target, peak-limited."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    block: AudioSegment | None = None
    blocks: list[float] = []  # mean square per 400 ms block
    peak = 0
    for _ms, frame in _decoded(paths, "audio"):
        for seg in _to_segment(frame, resampler):
            peak = max(peak, seg.max)
            block = seg if block is None else block + seg
            if len(block) >= 400:
                blocks.append(float(block.rms) ** 2)
                block = None
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


def _encode_audio(paths: list[Path], out_path: Path, gain_db: float, offset_ms: int,
                  cfg: PackagerConfig, result: dict[str, Any]) -> None:
    try:
        out = av.open(str(out_path), "w", format="matroska")
        stream = out.add_stream("aac", rate=48000, layout="mono")
        stream.bit_rate = cfg.audio_bitrate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        next_sample: int | None = None
        samples = 0
        for ms, frame in _decoded(paths, "audio"):
            start = (ms - offset_ms) * 48
            if next_sample is None:
                next_sample = max(0, start)
            for seg in _to_segment(frame, resampler):
                if gain_db:
                    seg = seg.apply_gain(gain_db)
                pcm = np.frombuffer(seg.raw_data, np.int16)
                if start > next_sample + 4800:  # a hole (write error, pause): keep it silent
                    gap = start - next_sample
                    silence = av.AudioFrame.from_ndarray(
                        np.zeros((1, gap), np.int16), format="s16", layout="mono")
                    silence.sample_rate = 48000
                    silence.pts = next_sample
                    for p in stream.encode(silence):
                        out.mux(p)
                    next_sample += gap
                f = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
                f.sample_rate = 48000
                f.pts = next_sample
                f.time_base = fractions.Fraction(1, 48000)
                next_sample += pcm.size
                samples += pcm.size
                for p in stream.encode(f):
                    out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
        out.close()
        result["samples"] = samples
    except Exception as exc:  # noqa: BLE001 - reported to the main thread
        result["error"] = exc


# ---- video ---------------------------------------------------------------------------------
def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _jpeg(frame: av.VideoFrame, width: int) -> bytes:
    height = _even(frame.height * width / frame.width)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = fractions.Fraction(1, 25)
    codec.options = {"qmin": "2", "qmax": "8"}
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    small.pts = 0
    return b"".join(bytes(p) for p in [*codec.encode(small), *codec.encode(None)])


def _ladder(width: int, height: int, cfg: PackagerConfig) -> list[tuple[Rung, int, int]]:
    rungs = []
    for rung in cfg.ladder:
        if rung.height > height:
            continue
        rungs.append((rung, _even(width * rung.height / height), rung.height))
    top = cfg.ladder[0]
    if not rungs or rungs[0][2] < height <= top.height:
        # the recording's own size on top (e.g. 640x360 between 720p and 360p)
        best = next((r for r in cfg.ladder if r.height <= height), cfg.ladder[-1])
        name = f"{height}p"
        if not rungs or rungs[0][0].name != name:
            rungs.insert(0, (Rung(name, height, best.bitrate, best.fps), _even(width),
                             _even(height)))
    return rungs


class _VideoOut:
    def __init__(self, path: Path, rung: Rung, width: int, height: int, cfg: PackagerConfig):
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
            "x264-params": f"scenecut=0:keyint={keyint}:min-keyint=1",
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


# ---- remux ---------------------------------------------------------------------------------
def _remux(inputs: list[Path], output: str, fmt: str, options: dict[str, str]) -> None:
    """Interleave the streams of ``inputs`` (one each) into ``output`` without re-encoding."""
    sources = [av.open(str(p)) for p in inputs]
    try:
        out = av.open(output, "w", format=fmt, options=options)
        pairs = []
        for src in sources:
            ins = src.streams[0]
            pairs.append((src, ins, out.add_stream_from_template(ins)))
        iters = []
        for src, ins, outs in pairs:
            iters.append((src.demux(ins), outs))
        heads: list[Any] = [_next_packet(it) for it, _outs in iters]
        while True:
            best = None
            for i, packet in enumerate(heads):
                if packet is None:
                    continue
                key = float(packet.dts * packet.time_base)
                if best is None or key < best[0]:
                    best = (key, i)
            if best is None:
                break
            i = best[1]
            packet = heads[i]
            packet.stream = iters[i][1]
            out.mux(packet)
            heads[i] = _next_packet(iters[i][0])
        out.close()
    finally:
        for src in sources:
            src.close()


def _next_packet(it: Any) -> Any:
    for packet in it:
        if packet.dts is not None and packet.size:
            return packet
    return None


def _codec_string(path: Path) -> str:
    """RFC 6381 codecs of a rung's H.264 (from its SPS) and AAC-LC."""
    with av.open(str(path)) as c:
        extra = c.streams.video[0].codec_context.extradata or b""
    if len(extra) >= 4 and extra[0] == 1:  # avcC: profile, constraints, level
        return f"avc1.{extra[1]:02x}{extra[2]:02x}{extra[3]:02x},mp4a.40.2"
    return "avc1.4d401f,mp4a.40.2"


def _playlist_stats(directory: Path) -> dict[str, Any]:
    """Duration, segment count and peak/average bit rate of one HLS media playlist."""
    lines = (directory / "index.m3u8").read_text().splitlines()
    durations, sizes = [], []
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            durations.append(float(line[8:].split(",")[0]))
            sizes.append((directory / lines[i + 1].strip()).stat().st_size)
    total = sum(durations)
    # the last segment is often a short tail (a keyframe and little else): not the peak
    full = list(zip(sizes, durations, strict=True))
    full = full[:-1] if len(full) > 1 else full
    peak = max((s * 8 / d for s, d in full if d > 0), default=0)
    avg = sum(sizes) * 8 / total if total else 0
    return {"duration": round(total, 3), "segments": len(durations),
            "peak_bps": int(peak * 1.1) + 1000, "average_bps": int(avg) + 1000,
            "bytes": sum(sizes)}


# ---- the whole job -------------------------------------------------------------------------
def package(directory: Path, cfg: PackagerConfig | None = None,
            events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    cfg = cfg or PackagerConfig()
    directory = Path(directory)
    started = time.monotonic()
    segments = read_index(directory)
    if not segments:
        raise PackagingError("no recorded segment")
    paths = _segment_paths(directory, segments)
    offset_ms = segments[0].start_ms
    duration_ms = segments[-1].end_ms - offset_ms
    out = directory / (REPLAY_DIR + ".tmp")
    shutil.rmtree(out, ignore_errors=True)
    (out / "hls").mkdir(parents=True)
    (out / "thumbs").mkdir()
    work = out / "work"
    work.mkdir()

    gain = measure_gain(paths, cfg)
    audio_result: dict[str, Any] = {}
    audio_path = work / "audio.mkv"
    audio_thread = threading.Thread(
        target=_encode_audio, args=(paths, audio_path, gain["gain_db"], offset_ms, cfg,
                                    audio_result), daemon=True)
    audio_thread.start()

    video_seg = next((s for s in segments if s.width and s.height), None)
    outs: list[_VideoOut] = []
    thumbs: list[tuple[int, str]] = []
    poster_at = min(duration_ms * 0.1, 10_000)
    poster: bytes | None = None
    if video_seg is not None:
        for rung, w, h in _ladder(video_seg.width, video_seg.height, cfg):
            outs.append(_VideoOut(work / f"{rung.name}.mkv", rung, w, h, cfg))
        next_key = 0.0
        next_thumb = 0.0
        for ms, frame in _decoded(paths, "video"):
            t = ms - offset_ms
            key = t >= next_key
            if key:
                next_key = (math.floor(t / (cfg.keyframe_seconds * 1000)) + 1) * (
                    cfg.keyframe_seconds * 1000)
            for o in outs:
                o.add(frame, t, key)
            if t >= next_thumb:
                name = f"thumbs/t{len(thumbs):05d}.jpg"
                (out / name).write_bytes(_jpeg(frame, cfg.thumbnail_width))
                thumbs.append((t, name))
                next_thumb = t + cfg.thumbnail_every * 1000
            if poster is None and t >= poster_at:
                poster = _jpeg(frame, min(cfg.poster_width, frame.width // 2 * 2))
        for o in outs:
            o.close()
        outs = [o for o in outs if o.frames]
    audio_thread.join()
    if "error" in audio_result:
        raise PackagingError(f"audio: {audio_result['error']}")
    has_audio = audio_result.get("samples", 0) > 0
    if not outs and not has_audio:
        raise PackagingError("nothing decodable in the recording")

    hls_opts = {"hls_time": str(cfg.hls_time), "hls_playlist_type": "vod",
                "hls_flags": "independent_segments", "hls_list_size": "0",
                "hls_segment_type": "fmp4"}
    renditions = []
    for o in outs:
        d = out / "hls" / o.rung.name
        d.mkdir()
        inputs = [work / f"{o.rung.name}.mkv"] + ([audio_path] if has_audio else [])
        _remux(inputs, str(d / "index.m3u8"), "hls",
               {**hls_opts, "hls_segment_filename": str(d / "s%05d.m4s"),
                "hls_fmp4_init_filename": "init.mp4"})
        stats = _playlist_stats(d)
        renditions.append({"name": o.rung.name, "kind": "video", "width": o.width,
                           "height": o.height, "fps": o.rung.fps,
                           "codecs": _codec_string(work / f"{o.rung.name}.mkv"),
                           "uri": f"hls/{o.rung.name}/index.m3u8", **stats})
    if has_audio:
        d = out / "hls" / "audio"
        d.mkdir()
        _remux([audio_path], str(d / "index.m3u8"), "hls",
               {**hls_opts, "hls_segment_filename": str(d / "s%05d.m4s"),
                "hls_fmp4_init_filename": "init.mp4"})
        renditions.append({"name": "audio", "kind": "audio", "codecs": "mp4a.40.2",
                           "uri": "hls/audio/index.m3u8", **_playlist_stats(d)})
    _write_master(out / "hls" / "master.m3u8", renditions)

    mp4_inputs = ([work / f"{outs[0].rung.name}.mkv"] if outs else []) + (
        [audio_path] if has_audio else [])
    _remux(mp4_inputs, str(out / "lesson.mp4"), "mp4", {"movflags": "+faststart"})

    if poster is None and thumbs:
        poster = (out / thumbs[0][1]).read_bytes()
    if poster is not None:
        (out / "poster.jpg").write_bytes(poster)
    _write_thumbs_vtt(out / "thumbs.vtt", thumbs, duration_ms)
    if events is None:
        events = read_events(directory)
    chapters = chapters_from_events(events, duration_ms, offset_ms)
    (out / "chapters.vtt").write_text(_chapters_vtt(chapters, duration_ms), encoding="utf-8")
    shutil.rmtree(work)

    summary = {
        "duration": round(duration_ms / 1000, 3),
        "renditions": renditions,
        "chapters": chapters,
        "thumbnails": len(thumbs),
        "poster": poster is not None,
        "audio": gain,
        "segments": len(segments),
        "mp4_bytes": (out / "lesson.mp4").stat().st_size,
        "packaging_seconds": round(time.monotonic() - started, 3),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    final = directory / REPLAY_DIR
    if final.exists():
        old = directory / (REPLAY_DIR + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(out, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(out, final)
    summary["size"] = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
    return summary


def _write_master(path: Path, renditions: list[dict[str, Any]]) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in renditions:  # highest first; the audio-only rung last (thin-link fallback)
        attrs = [f"BANDWIDTH={r['peak_bps']}", f"AVERAGE-BANDWIDTH={r['average_bps']}",
                 f'CODECS="{r["codecs"]}"']
        if r["kind"] == "video":
            attrs.append(f"RESOLUTION={r['width']}x{r['height']}")
            attrs.append(f"FRAME-RATE={r['fps']:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(r["uri"][len("hls/"):])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_thumbs_vtt(path: Path, thumbs: list[tuple[int, str]], duration_ms: int) -> None:
    lines = ["WEBVTT", ""]
    for i, (t, name) in enumerate(thumbs):
        end = thumbs[i + 1][0] if i + 1 < len(thumbs) else max(duration_ms, t + 1)
        lines += [f"{vtt_time(t)} --> {vtt_time(end)}", name, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _chapters_vtt(chapters: list[dict[str, Any]], duration_ms: int) -> str:
    lines = ["WEBVTT", ""]
    for i, ch in enumerate(chapters):
        start = int(ch["start"] * 1000)
        end = int(chapters[i + 1]["start"] * 1000) if i + 1 < len(chapters) else duration_ms
        lines += [str(i + 1), f"{vtt_time(start)} --> {vtt_time(max(end, start + 1))}",
                  ch["title"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recording.packager")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--preset", default=None)
    args = parser.parse_args(argv)
    cfg = PackagerConfig()
    if args.preset:
        cfg.preset = args.preset
    try:
        summary = package(args.directory, cfg)
    except PackagingError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
