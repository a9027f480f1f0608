"""A headless aiortc classroom for real-link tests, run inside a NetLab namespace.

    python -m tests.netlab_classroom BASE_URL TOKEN

Connects, subscribes, and prints one JSON line every 0.25 s: ``video_frames``,
``audio_frames``, ``size`` (last decoded video frame), ``audio_gaps`` (gaps over 100 ms
between audio frames since the previous line, in ms), ``video_times`` (monotonic seconds
of the video frames since the previous line, for frame rates). Ends on stdin EOF or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from classroom_client import ClassroomClient


class Probe(ClassroomClient):
    size: tuple[int, int] | None = None
    gaps: list[float]
    video_times: list[float]

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            last_audio = None
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    self.video_frames += 1
                    self.size = (frame.width, frame.height)
                    self.video_times.append(round(now, 3))
                else:
                    self.audio_frames += 1
                    if last_audio is not None and now - last_audio > 0.1:
                        self.gaps.append(round(1000 * (now - last_audio)))
                    last_audio = now


async def main(base_url: str, token: str) -> None:
    room = Probe(base_url, token)
    room.gaps, room.video_times = [], []
    await room.connect()
    await room.subscribe()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    while not stop.is_set():
        gaps, room.gaps = room.gaps, []
        times, room.video_times = room.video_times, []
        print(json.dumps({"t": round(time.monotonic(), 3), "video_frames": room.video_frames,
                          "audio_frames": room.audio_frames, "size": room.size,
                          "audio_gaps": gaps, "video_times": times,
                          "peer_id": room.peer_id}), flush=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    await room.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
