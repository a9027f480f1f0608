"""Helpers for recording tests: a library folder, a teacher publishing real aiortc media."""

from __future__ import annotations

from pathlib import Path

import av

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack


async def teacher_publishing(base_url: str, token: str) -> ClassroomClient:
    teacher = ClassroomClient(base_url, token)
    await teacher.connect()
    await teacher.publish(SyntheticVideoTrack(320, 240, 30), SyntheticAudioTrack())
    return teacher


def decode_counts(path: Path | str) -> tuple[int, int, float]:
    """(video frames, audio samples, seconds of video) decoded from a media file or playlist."""
    frames = samples = 0
    first = last = None
    with av.open(str(path)) as c:
        if c.streams.video:
            for frame in c.decode(video=0):
                frames += 1
                t = float(frame.time)
                first = t if first is None else first
                last = t
    with av.open(str(path)) as c:
        if c.streams.audio:
            for frame in c.decode(audio=0):
                samples += frame.samples
    return frames, samples, (last - first) if first is not None else 0.0
