"""A headless aiortc classroom that sends ``quality`` reports as the pages do (docs/quality.md),
from what it really received: for the live Prometheus test, run inside a NetLab namespace.

    python -m tests.ops.reporting_classroom BASE_URL TOKEN [INTERVAL_S]

What a browser's getStats() counts, measured here on the decoded media:

* ``audio_samples``: the audio timeline played (48 kHz, from the frames' pts, first to
  last); ``audio_concealed``: the part of it no frame arrived for (a browser's NetEQ fills
  those with concealment);
* ``frames_received`` / ``frames_decoded``: decoded video frames; ``freezes`` /
  ``freeze_ms``: gaps between frames longer than max(3 x the mean frame interval,
  mean + 150 ms), Chrome's freeze rule;
* ``video_lost`` / ``audio_lost``: packetsLost of aiortc's inbound-rtp stats;
* ``tier``: ``high`` (where the relay starts a classroom) until a ``tier`` message says
  otherwise.

Prints one JSON line per report sent (the totals, and any error the server answered).
Ends on stdin EOF or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from classroom_client import ClassroomClient

SAMPLE_RATE = 48_000


class ReportingClassroom(ClassroomClient):
    def init_counters(self) -> None:
        self.audio_first_pts: int | None = None
        self.audio_end_pts = 0
        self.audio_received = 0
        self.video_decoded = 0
        self.video_intervals: list[float] = []
        self.last_video_at: float | None = None
        self.freezes = 0
        self.freeze_ms = 0.0
        self.tier = "high"

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "audio":
                    samples = frame.samples
                    if frame.pts is None:
                        continue
                    if self.audio_first_pts is None:
                        self.audio_first_pts = frame.pts
                    self.audio_end_pts = max(self.audio_end_pts, frame.pts + samples)
                    self.audio_received += samples
                    continue
                self.video_decoded += 1
                if self.last_video_at is not None:
                    gap = now - self.last_video_at
                    recent = self.video_intervals[-30:]
                    if len(recent) >= 5:
                        mean = sum(recent) / len(recent)
                        if gap > max(3 * mean, mean + 0.150):
                            self.freezes += 1
                            self.freeze_ms += 1000 * gap
                    self.video_intervals.append(gap)
                self.last_video_at = now

    async def lost(self) -> dict[str, int]:
        out = {"audio": 0, "video": 0}
        pc = self.pcs.get("subscribe")
        if pc is None:
            return out
        for stat in (await pc.getStats()).values():
            if getattr(stat, "type", "") == "inbound-rtp":
                out[stat.kind] += max(0, int(stat.packetsLost or 0))
        return out

    def report_totals(self) -> dict:
        played = 0 if self.audio_first_pts is None else self.audio_end_pts - self.audio_first_pts
        played = max(played, self.audio_received)
        return {"frames_received": self.video_decoded, "frames_decoded": self.video_decoded,
                "freezes": self.freezes, "freeze_ms": round(self.freeze_ms),
                "audio_samples": played,
                "audio_concealed": max(0, played - self.audio_received)}


async def main(base_url: str, token: str, interval: float) -> None:
    room = ReportingClassroom(base_url, token)
    room.init_counters()
    await room.connect()
    await room.subscribe()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    epoch, seq, last = os.urandom(6).hex(), 0, time.monotonic()
    seen = 0
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        for message in room.messages[seen:]:
            if message.get("type") == "tier" and message.get("peer_id") in (None, room.peer_id):
                room.tier = message["tier"]
        seen = len(room.messages)
        now = time.monotonic()
        lost = await room.lost()
        seq += 1
        report = {"type": "quality", "epoch": epoch, "seq": seq,
                  "interval_ms": round(1000 * (now - last)), "tier": room.tier,
                  "video_tracks": 1, "audio_tracks": 1, **room.report_totals(),
                  "video_lost": lost["video"], "audio_lost": lost["audio"],
                  "jitter_audio_ms": None, "jitter_video_ms": None, "rtt_ms": None}
        last = now
        await room.send(report)
        errors = [e for e in room.errors if e.get("ref") == "quality"]
        print(json.dumps({**report, "errors": errors[-1:], "peer_id": room.peer_id}),
              flush=True)
    await room.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 5.0))
