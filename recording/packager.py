"""Packaging a recording for replay: HLS ladder, audio-only rendition, MP4, pictures, chapters.

Choice: the recorded VP8 + Opus is **transcoded to H.264 (libx264) + AAC** in fMP4
HLS segments (CMAF-style; iOS 10+, hls.js; far less overhead than MPEG-TS for the
audio-only rung). Safari on iPhone/iPad plays HLS natively but not VP8 in HLS, and many old
Android phones and TVs only decode H.264 in hardware; a remux of VP8 to fMP4 would be
cheaper to make and would not play where replay matters most. The recording itself stays
VP8 + Opus (no re-encode on the live path); the transcode runs in child processes at low
priority (``nice``), so it never competes with a live lesson's event loop.

The video is transcoded **while the lesson is recorded**, a chunk (~60 s of closed
segments) at a time (``python -m recording.packager DIR --chunks-only``, see chunks.py),
so when the lesson ends only the tail remains. Then ``package(directory)``:

1. brings the chunks up to date (the tail becomes the last chunk);
2. decides one gain from the chunks' loudness measures (pydub RMS of 400 ms blocks, a
   BS.1770-style two-stage gate without the K filter, limited so the loudest peak stays
   under -1 dBFS) and encodes the audio once to AAC with it;
3. remuxes (no re-encode) the chunks of each rung, concatenated, with the audio into
   ``hls/<rung>/index.m3u8``, the audio alone into ``hls/audio/index.m3u8`` (what a thin
   link falls back to), the master playlist, and ``lesson.mp4`` (the top rung, faststart);
4. gathers the chunks' poster and thumbnails, writes chapters from the lesson events.

Outputs are built in ``replay.tmp/`` and renamed to ``replay/`` when complete; the chunks
are removed after that. Run as ``python -m recording.packager DIR`` (prints the summary as
JSON).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av

from . import chunks as chunking
from . import tracks
from .chapters import chapters_from_events, read_events, vtt_time
from .segments import SEGMENT_DIR, read_index
from .transcode import (
    PackagerConfig,
    PackagingError,
    Rung,
    encode_aac,
    gain_from_blocks,
)

__all__ = ["REPLAY_DIR", "PackagerConfig", "PackagingError", "Rung", "package",
           "package_chunks"]

REPLAY_DIR = "replay"
SUMMARY_FILE = "package.json"


# ---- remux ---------------------------------------------------------------------------------
def _packets(paths: list[Path]) -> Iterator[av.Packet]:
    """The packets of the first stream of each file, one file after the other."""
    for path in paths:
        with av.open(str(path)) as src:
            for packet in src.demux(src.streams[0]):
                if packet.dts is not None and packet.size:
                    yield packet


def _remux(inputs: list[list[Path]], output: str, fmt: str, options: dict[str, str]) -> None:
    """Interleave streams (each the concatenation of its files) into ``output``, no re-encode."""
    out = av.open(output, "w", format=fmt, options=options)
    try:
        iters = []
        scales = []  # seconds per tick of each input (a float: Fractions are slow here)
        for files in inputs:
            with av.open(str(files[0])) as first:
                outs = out.add_stream_from_template(first.streams[0])
                scales.append(float(first.streams[0].time_base))
            iters.append((_packets(files), outs))
        heads: list[Any] = [next(it, None) for it, _outs in iters]
        last_dts: list[float] = [-1e18] * len(iters)
        while True:
            best = None
            for i, packet in enumerate(heads):
                if packet is None:
                    continue
                key = packet.dts * scales[i]
                if best is None or key < best[0]:
                    best = (key, i)
            if best is None:
                break
            key, i = best
            packet = heads[i]
            if key > last_dts[i]:  # never a step back where two pieces meet
                packet.stream = iters[i][1]
                out.mux(packet)
                last_dts[i] = key
            heads[i] = next(iters[i][0], None)
    finally:
        out.close()


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
def package_chunks(directory: Path, cfg: PackagerConfig | None = None) -> dict[str, Any]:
    """Transcode the complete chunks not done yet (while the lesson is still recorded)."""
    cfg = cfg or PackagerConfig()
    started = time.monotonic()
    if not (Path(directory) / SEGMENT_DIR).is_dir():
        raise PackagingError(f"no recording in {directory}")
    with chunking.locked(Path(directory)):
        chunks, made = chunking.update(Path(directory), cfg, final=False)
    lines = tracks.update_chunks(Path(directory), cfg, final=False)
    return {"chunks": len(chunks), "made": made,
            "lines": {n: d["made"] for n, d in lines.items()},
            "covered": chunking.covered_seconds(chunks),
            "seconds": round(time.monotonic() - started, 3)}


def package(directory: Path, cfg: PackagerConfig | None = None,
            events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Package a finished recording (the chunks already made are reused)."""
    cfg = cfg or PackagerConfig()
    directory = Path(directory)
    if not (directory / SEGMENT_DIR).is_dir():
        raise PackagingError(f"no recording in {directory}")
    with chunking.locked(directory):
        return _package(directory, cfg, events)


def _package(directory: Path, cfg: PackagerConfig,
             events: list[dict[str, Any]] | None) -> dict[str, Any]:
    started = time.monotonic()
    segments = read_index(directory)
    if not segments:
        raise PackagingError("no recorded segment")
    reused = len(chunking.load_chunks(directory / chunking.CHUNK_DIR))
    offset_ms = segments[0].start_ms
    duration_ms = segments[-1].end_ms - offset_ms
    out = directory / (REPLAY_DIR + ".tmp")
    shutil.rmtree(out, ignore_errors=True)
    (out / "hls").mkdir(parents=True)
    (out / "thumbs").mkdir()
    work = out / "work"
    work.mkdir()
    audio_path = work / "audio.mkv"
    audio_result: dict[str, Any] = {}
    audio_job: dict[str, Any] = {}
    # the share and the stage first (their tails are short): the stage's voice is mixed in
    lines = tracks.update_chunks(directory, cfg, final=True)
    stage_pcm = tracks.stage_audio(directory, offset_ms)

    def start_audio(kept: list[chunking.Chunk], pending: list[dict[str, Any]]) -> None:
        """The whole lesson's loudness is known: encode the AAC beside the tail's video."""
        blocks = [b for c in kept for b in c.info["loudness"]["blocks"]]
        blocks += [b for a in pending for b in a.get("blocks", [])]
        peak = max([c.info["loudness"]["peak"] for c in kept]
                   + [a.get("peak", 0) for a in pending] + [0])
        gain = gain_from_blocks(blocks, peak, cfg)
        pieces = tracks.mix(itertools.chain(chunking.audio_pieces(kept), (
            (a["first"], a["pcm"]) for a in pending if a.get("pcm") is not None)), stage_pcm)
        thread = threading.Thread(target=encode_aac, args=(
            pieces, audio_path, gain["gain_db"], cfg, audio_result), daemon=True)
        thread.start()
        audio_job.update(gain=gain, thread=thread)

    chunks, made = chunking.update(directory, cfg, final=True, segments=segments,
                                   on_audio=start_audio)
    tail_seconds = time.monotonic() - started
    gain = audio_job["gain"]
    audio_thread = audio_job["thread"]

    plan = json.loads((directory / chunking.CHUNK_DIR / chunking.PLAN_FILE).read_text())
    rungs = []  # (plan rung, chunk files holding it)
    for r in plan["rungs"]:
        files = [c.directory / f"{r['name']}.mkv" for c in chunks if r["name"] in c.info["rungs"]]
        if files:
            rungs.append((r, files))
    thumbs: list[tuple[int, str]] = []
    poster: Path | None = None
    for c in chunks:
        for t, name in c.info["thumbs"]:
            _link(c.directory / "thumbs" / name, out / "thumbs" / name)
            thumbs.append((t, f"thumbs/{name}"))
        if poster is None and c.info["poster"]:
            poster = c.directory / "poster.jpg"
    audio_thread.join()
    if "error" in audio_result:
        raise PackagingError(f"audio: {audio_result['error']}")
    has_audio = audio_result.get("samples", 0) > 0
    if not rungs and not has_audio:
        raise PackagingError("nothing decodable in the recording")

    hls_opts = {"hls_time": str(cfg.hls_time), "hls_playlist_type": "vod",
                "hls_flags": "independent_segments", "hls_list_size": "0",
                "hls_segment_type": "fmp4"}
    renditions = []
    for r, files in rungs:
        d = out / "hls" / r["name"]
        d.mkdir()
        _remux([files] + ([[audio_path]] if has_audio else []), str(d / "index.m3u8"), "hls",
               {**hls_opts, "hls_segment_filename": str(d / "s%05d.m4s"),
                "hls_fmp4_init_filename": "init.mp4"})
        renditions.append({"name": r["name"], "kind": "video", "width": r["width"],
                           "height": r["out_height"], "fps": r["fps"],
                           "codecs": _codec_string(files[0]),
                           "uri": f"hls/{r['name']}/index.m3u8", **_playlist_stats(d)})
    if has_audio:
        d = out / "hls" / "audio"
        d.mkdir()
        _remux([[audio_path]], str(d / "index.m3u8"), "hls",
               {**hls_opts, "hls_segment_filename": str(d / "s%05d.m4s"),
                "hls_fmp4_init_filename": "init.mp4"})
        renditions.append({"name": "audio", "kind": "audio", "codecs": "mp4a.40.2",
                           "uri": "hls/audio/index.m3u8", **_playlist_stats(d)})
    _write_master(out / "hls" / "master.m3u8", renditions)

    mp4_inputs = ([rungs[0][1]] if rungs else []) + ([[audio_path]] if has_audio else [])
    _remux(mp4_inputs, str(out / "lesson.mp4"), "mp4", {"movflags": "+faststart"})
    line_entries = []
    for name, done in lines.items():
        path = directory / tracks.TRACK_DIR / name
        line_plan = json.loads((path / chunking.CHUNK_DIR / chunking.PLAN_FILE).read_text())
        if not line_plan["rungs"]:
            continue
        rung = line_plan["rungs"][0]
        files = [c.directory / f"{rung['name']}.mkv" for c in done["chunks"]
                 if rung["name"] in c.info["rungs"]]
        if not files:
            continue
        _remux([files], str(out / f"{name}.mp4"), "mp4", {"movflags": "+faststart"})
        line_entries.append(tracks.entry(name, path, offset_ms, rung, f"{name}.mp4"))

    if poster is not None:
        shutil.copyfile(poster, out / "poster.jpg")
    elif thumbs:
        shutil.copyfile(out / thumbs[0][1], out / "poster.jpg")
    _write_thumbs_vtt(out / "thumbs.vtt", thumbs, duration_ms)
    if events is None:
        events = read_events(directory)
    chapters = chapters_from_events(events, duration_ms, offset_ms)
    (out / "chapters.vtt").write_text(_chapters_vtt(chapters, duration_ms), encoding="utf-8")
    shutil.rmtree(work)

    summary = {
        "duration": round(duration_ms / 1000, 3),
        "renditions": renditions,
        "lines": line_entries,
        "chapters": chapters,
        "thumbnails": len(thumbs),
        "poster": (out / "poster.jpg").exists(),
        "audio": gain,
        "segments": len(segments),
        "chunks": {"total": len(chunks), "reused": len(chunks) - made,
                   "found": reused, "made_now": made,
                   "tail_seconds": round(tail_seconds, 3)},
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
    # the replay holds everything now: the intermediates go (a re-package starts over)
    for c in chunks + [c for done in lines.values() for c in done["chunks"]]:
        shutil.rmtree(c.directory, ignore_errors=True)
    summary["size"] = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
    return summary


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


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
    parser.add_argument("--chunk-seconds", type=float, default=None)
    parser.add_argument("--chunks-only", action="store_true",
                        help="only transcode the complete chunks (the lesson goes on)")
    args = parser.parse_args(argv)
    cfg = PackagerConfig()
    if args.preset:
        cfg.preset = args.preset
    if args.chunk_seconds:
        cfg.chunk_seconds = args.chunk_seconds
    try:
        if args.chunks_only:
            summary = package_chunks(args.directory, cfg)
        else:
            summary = package(args.directory, cfg)
    except PackagingError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
