"""Recovery after a crash: make a recording folder consistent, salvage the torn segment.

:func:`recover_segments` runs at start (the node, ``classroom library rebuild|package``)
on every recording left unfinished by a killed process.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av

from . import metrics
from .segments import (
    PART_SUFFIX,
    SEGMENT_DIR,
    SEGMENT_SUFFIX,
    SegmentFile,
    SegmentInfo,
    append_index,
    default_opener,
    read_index,
    segment_name,
)

logger = logging.getLogger(__name__)


def probe_segment(path: Path) -> SegmentInfo | None:
    """Read a segment file completely; None when it holds no decodable packet."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError):
        return None
    start = end = None
    frames = packets = 0
    width = height = 0
    try:
        with container:
            for stream in container.streams.video[:1]:
                width, height = stream.codec_context.width, stream.codec_context.height
            try:
                for packet in container.demux():
                    if packet.pts is None or packet.size == 0:
                        continue
                    ms = int(packet.pts * packet.time_base * 1000)
                    if packet.stream.type == "video":
                        frames += 1
                    else:
                        packets += 1
                        ms_end = ms + 20
                        end = ms_end if end is None else max(end, ms_end)
                    start = ms if start is None else min(start, ms)
                    end = ms if end is None else max(end, ms)
            except (av.FFmpegError, OSError, ValueError):
                pass
    except (av.FFmpegError, OSError, ValueError):
        return None
    if start is None or end is None:
        return None
    seq = int(path.name[4:10]) if path.name[4:10].isdigit() else 0
    return SegmentInfo(seq=seq, file=segment_name(seq), start_ms=start, end_ms=end,
                       bytes=path.stat().st_size, width=width, height=height,
                       video_frames=frames, audio_packets=packets)


def _salvage(part: Path, fsync: bool) -> SegmentInfo | None:
    """Remux the readable packets of a segment cut short by a crash into a complete one."""
    seq = int(part.name[4:10]) if part.name[4:10].isdigit() else 0
    try:
        source = av.open(str(part))
    except (av.FFmpegError, OSError, ValueError):
        return None
    packets: list[tuple[str, bytes, int, bool]] = []
    size = None
    with source:
        if source.streams.video:
            ctx = source.streams.video[0].codec_context
            size = (ctx.width, ctx.height) if ctx.width and ctx.height else None
        try:
            for packet in source.demux():
                if packet.pts is None or packet.size == 0:
                    continue
                kind = packet.stream.type
                if kind not in ("video", "audio"):
                    continue
                ms = int(packet.pts * packet.time_base * 1000)
                packets.append((kind, bytes(packet), ms, bool(packet.is_keyframe)))
        except (av.FFmpegError, OSError, ValueError):
            pass  # the torn end: keep what came before it
    if not packets:
        return None
    try:
        segment = SegmentFile(part.parent, seq, size, default_opener, ".salvage")
        for kind, data, ms, key in packets:
            if kind == "video" and not segment.has_video:
                continue
            segment.write(kind, data, ms, key, 0 if kind == "video" else 20)
        info = segment.finish(fsync)
    except Exception:  # noqa: BLE001
        logger.exception("salvage failed", extra={"file": str(part)})
        return None
    info.salvaged = True
    return info


def recover_segments(directory: Path, fsync: bool = True) -> list[SegmentInfo]:
    """Make a recording folder consistent after a crash and return its complete segments.

    Indexed segments are kept; complete segment files the index missed (killed between
    the rename and the append) are probed and indexed; the ``.part`` being written at the
    kill is salvaged into a complete segment (its readable packets) and removed.
    Segments that cannot be read at all are moved aside as ``*.corrupt``.
    """
    directory = Path(directory)
    segdir = directory / SEGMENT_DIR
    if not segdir.is_dir():
        return []
    known = {s.seq: s for s in read_index(directory)}
    for path in sorted(segdir.glob("seg-*" + SEGMENT_SUFFIX)):
        info = probe_segment(path)
        if info is None:
            path.rename(path.with_suffix(".corrupt"))
            known.pop(int(path.name[4:10]) if path.name[4:10].isdigit() else -1, None)
            metrics.ERRORS.labels(reason="recovery").inc()
            continue
        if info.seq not in known:
            append_index(directory, info, fsync)
            known[info.seq] = info
    for part in sorted(segdir.glob("seg-*" + PART_SUFFIX)):
        seq = int(part.name[4:10]) if part.name[4:10].isdigit() else -1
        if seq in known:
            part.unlink()
            continue
        info = _salvage(part, fsync)
        if info is not None:
            append_index(directory, info, fsync)
            known[info.seq] = info
        part.unlink()
    for stray in segdir.glob("*.salvage"):
        stray.unlink()
    return [known[k] for k in sorted(known)]
