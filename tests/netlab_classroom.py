"""A headless aiortc classroom for real-link tests, run inside a NetLab namespace.

    python -m tests.netlab_classroom BASE_URL TOKEN

Connects, subscribes (with the player's buffers of classroom_client.playout), and prints
one JSON line every 0.25 s: ``video_frames``, ``audio_frames``, ``size`` (last decoded
video frame), and since the previous line: ``audio_gaps`` (arrival gaps over 100 ms between
audio frames, ms), ``audio_media_gaps`` (the jump in the audio's own timeline over each of
those: audio missing), ``audible_gaps`` (what a listener hears with a ``PLAYOUT_MS``
buffer: the larger of the missing audio and the stall beyond the buffer),
``video_times`` (monotonic seconds of the video frames, for frame rates), ``loop_lag_ms``
(this process's event-loop lag: CPU starvation), ``receivers`` (jitter buffer origin and
packets held, NACK backlog, holes skipped, PLIs). Ends on stdin EOF or SIGTERM.
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

PLAYOUT_MS = 100
"""The audio a player holds back (a browser's jitter buffer holds 40-200 ms, more on a
jittery link): an arrival stall shorter than this is not heard."""


class Probe(ClassroomClient):
    size: tuple[int, int] | None = None
    gaps: list[float]
    media_gaps: list[float]
    audible: list[float]
    video_times: list[float]

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            last_audio = last_pts = None
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    self.video_frames += 1
                    self.size = (frame.width, frame.height)
                    self.video_times.append(round(now, 3))
                else:
                    self.audio_frames += 1
                    pts = frame.pts
                    if last_audio is not None:
                        arrival = 1000 * (now - last_audio)
                        media = (pts - last_pts) / 48 if pts is not None and last_pts is not None \
                            else 20.0
                        if arrival > 100 or media > 100:
                            self.gaps.append(round(arrival))
                            self.media_gaps.append(round(media))
                            # what a listener hears: audio missing from the timeline, or a
                            # stall longer than the player's buffer covers
                            self.audible.append(round(max(media, arrival - PLAYOUT_MS)))
                    last_audio, last_pts = now, pts


def receivers(room: ClassroomClient) -> dict:
    """What each aiortc receiver holds: jitter buffer origin and packets, NACK backlog."""
    out = {}
    pc = room.pcs.get("subscribe")
    for t in pc.getTransceivers() if pc else []:
        r = t.receiver
        jb = getattr(r, "_RTCRtpReceiver__jitter_buffer", None)
        nack = getattr(r, "_RTCRtpReceiver__nack_generator", None)
        if jb is None:
            continue
        held = [p.sequence_number for p in jb._packets if p is not None]
        out[t.kind] = {"origin": jb._origin, "held": len(held),
                       "max_held": max(held, default=None),
                       "missing": len(nack.missing) if nack else None,
                       "max_seq": nack.max_seq if nack else None}
        buffer = room.buffers.get(t.kind)
        if buffer is not None:
            out[t.kind].update(holes_skipped=buffer.holes_skipped, plis=buffer.plis,
                               discarded=buffer.packets_discarded)
    return out


async def main(base_url: str, token: str) -> None:
    room = Probe(base_url, token)
    room.gaps, room.video_times, room.media_gaps, room.audible = [], [], [], []
    lag = [0.0]

    async def ticker() -> None:  # this process's own event-loop lag (CPU starvation)
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            lag[0] = max(lag[0], time.monotonic() - start - 0.01)

    tick = asyncio.ensure_future(ticker())
    await room.connect()
    await room.subscribe()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    while not stop.is_set():
        gaps, room.gaps = room.gaps, []
        times, room.video_times = room.video_times, []
        media_gaps, room.media_gaps = room.media_gaps, []
        audible, room.audible = room.audible, []
        loop_lag, lag[0] = lag[0], 0.0
        print(json.dumps({"t": round(time.monotonic(), 3), "video_frames": room.video_frames,
                          "audio_frames": room.audio_frames, "size": room.size,
                          "audio_gaps": gaps, "audio_media_gaps": media_gaps,
                          "audible_gaps": audible,
                          "loop_lag_ms": round(1000 * loop_lag), "video_times": times,
                          "peer_id": room.peer_id, "receivers": receivers(room)}), flush=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    tick.cancel()
    await room.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
