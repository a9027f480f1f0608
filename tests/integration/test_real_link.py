"""Adaptive bitrate over real shaped links: a classroom in a network namespace behind
``tc tbf`` + nftables loss (tests/netlab.py), another unconstrained, one lesson.

The issue's scenario, in one run (~35-45 s): at 400 kbit/s with 3 % loss the thin classroom
is on ``low`` within 10 s, decodes 320x180 at >= 12 fps and its audio has no gap over
200 ms; the limit lifted, it is back on ``high`` within 20 s; cut to 100 kbit/s it is
audio-only within 15 s with its audio still continuous; the unconstrained classroom is on
``high`` throughout.

The thin classroom is a subprocess inside the namespace (tests/netlab_classroom.py: an
aiortc classroom with the player's buffers of classroom_client.playout, printing what it
decodes); the relay's view (tiers, counters) comes from the server in this process. The
unconstrained classroom here only counts frames (no decoding: the machine has 2 cores), and
the teacher's 640x360 video is encoded realtime as a browser would (EncodedVideoTrack).

Skipped, with the reason, only where network namespaces cannot be created (not root, or
``ip``/``tc``/``nft``/``ethtool`` missing). It is a real-time test (~35-45 s): on a busy
2-core machine (load 13-21, earlier sessions) the relay's event loop stalls 200-300 ms,
heard as audio gaps, and the frame rate on low fell to ~8 fps. On a quiet one (load
1.5-2.6) it passed all ten runs after the climb fixes of the rate controller (a lagging
REMB no longer fails or blocks probes, 1 s hold after a passed probe, backoff reset when
the path's loss goes): low in 2.0-4.5 s, 12.2-15.4 fps, no audible gap, high 5.9-9.6 s
after the lift, audio-only 3.9-4.8 s after the cut to 100 kbit/s (docs/benchmarks.md, "Real link").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from classroom_client import ClassroomClient
from classroom_client.media import (
    EncodedVideoTrack,
    SyntheticAudioTrack,
    install_counting_decoder,
    uninstall_counting_decoder,
)
from tests.helpers import start_server
from tests.netlab import NetLab, available

pytestmark = pytest.mark.skipif(not available()[0], reason=available()[1] or "netlab")

LESSON = "rl"


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

    def since(self, t0: float, t1: float = float("inf")) -> list[dict]:
        return [x for x in list(self.lines) if t0 <= x["t"] <= t1]

    def gaps(self, key: str, t0: float, t1: float = float("inf")) -> list[int]:
        return [g for x in self.since(t0, t1) for g in x[key]]

    def fps(self, t0: float, t1: float) -> float:
        times = [t for x in list(self.lines) for t in x["video_times"] if t0 <= t <= t1]
        return len(times) / (t1 - t0)

    def audio_frames_at(self, t: float) -> int:
        before = [x["audio_frames"] for x in list(self.lines) if x["t"] <= t]
        return before[-1] if before else 0


async def wait_for(condition: Callable[[], bool], timeout: float, what: str,
                   report: Callable[[], str] | None = None) -> float:
    """Seconds until ``condition()``; fails with ``report()`` at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f": {report()}" if report else ""))
        await asyncio.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.long  # 34 s; tests/media_relay/test_ladder.py checks the moves on a lossy link
async def test_thin_link_goes_low_then_audio_and_comes_back() -> None:
    install_counting_decoder()  # for the unconstrained classroom in this process
    clients: list[ClassroomClient] = []
    proc = None
    try:
        with NetLab() as lab:
            server = await start_server(bind="0.0.0.0")
            port = server.base_url.rsplit(":", 1)[1]
            relay = server.node.relay
            try:
                teacher = ClassroomClient(server.base_url,
                                          server.token("teacher", LESSON, name="T"))
                clients.append(teacher)
                await teacher.connect()
                # encoded like a browser (realtime): aiortc's own encoder costs far more CPU
                await teacher.publish(EncodedVideoTrack(640, 360, 30, bitrate=1_000_000),
                                      SyntheticAudioTrack())
                await teacher.start_lesson()
                wide = ClassroomClient(server.base_url,
                                       server.token("classroom", LESSON, name="w"))
                clients.append(wide)
                await wide.connect()
                await wide.subscribe()
                proc = lab.popen(sys.executable, "-m", "tests.netlab_classroom",
                                 f"http://{lab.host_ip}:{port}",
                                 server.token("classroom", LESSON, name="thin"),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                thin = Remote(proc)
                await wait_for(lambda: thin.last.get("video_frames", 0) >= 30, 30,
                               "the namespaced classroom streaming")
                rid = thin.last["peer_id"] + "/subscribe"
                wide_rid = wide.peer_id + "/subscribe"
                subs = relay.stats()["lessons"][LESSON]["subscribers"]
                assert relay.tier_of(rid) == "high" and relay.tier_of(wide_rid) == "high", {
                    k: (subs[k]["tier"], subs[k]["tier_reason"], subs[k]["rate_control"])
                    for k in (rid, wide_rid)}
                await scenario(lab, relay, thin, rid, wide_rid)
                proc.stdin.close()
            finally:
                for client in clients:
                    await client.close()
                await server.close()
    finally:
        uninstall_counting_decoder()


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def scenario(lab: NetLab, relay, thin: Remote, rid: str, wide_rid: str) -> None:
    wide_tiers: set[str | None] = set()
    trace: list[tuple] = []
    start = time.monotonic()

    def tier() -> str | None:
        wide_tiers.add(relay.tier_of(wide_rid))
        now = time.monotonic()
        if not trace or now - start - trace[-1][0] >= 0.5:  # the controller's view, for failures
            sub = subscriber()
            rc, video = sub.get("rate_control", {}), sub.get("video", {})
            trace.append((round(now - start, 1), sub.get("tier"), rc.get("state"),
                          _r(rc.get("loss")), _r(rc.get("estimate"), -3),
                          _r(rc.get("sent_bitrate"), -3), _r(rc.get("rtt")),
                          video.get("fraction_lost"), video.get("retransmits"),
                          video.get("padding_octets"), _r(rc.get("remb"), -3),
                          rc.get("hold"), rc.get("probe_tier"),
                          (rc.get("last_probe") or (None, None))[1]))
        return relay.tier_of(rid)

    def subscriber() -> dict:
        return relay.stats()["lessons"][LESSON]["subscribers"].get(rid, {})

    def state() -> str:
        sub = subscriber()
        return json.dumps({"tier": sub.get("tier"), "video": sub.get("video"),
                           "audio": sub.get("audio"), "rc": sub.get("rate_control"),
                           "classroom": thin.last,
                           "trace": trace_text()})

    def trace_text(t0: float = 0.0, t1: float = float("inf")) -> str:
        head = ("t tier state loss estimate sent rtt fraction_lost retransmits padding remb "
                "hold probe_tier last_probe")
        return "\n".join([head] + [" ".join(map(str, row)) for row in trace
                                    if t0 <= row[0] <= t1])

    # 400 kbit/s with 3 % loss: low within 10 s, decoding at >= 12 fps, audio unbroken
    lab.shape(400)
    lab.loss(3)
    took_low = await wait_for(lambda: tier() == "low", 10, "low within 10 s", state)
    await wait_for(lambda: thin.last.get("size") == [320, 180], 10, "320x180 decoded", state)
    t_low = time.monotonic()
    while time.monotonic() - t_low < 8:
        assert tier() == "low", state()
        await asyncio.sleep(0.2)
    t_end = time.monotonic()
    window = (t_low + 1, t_end - 0.5)
    audible = thin.gaps("audible_gaps", *window)
    arrival = thin.gaps("audio_gaps", *window)
    missing = thin.gaps("audio_media_gaps", *window)
    fps = thin.fps(*window)
    per_second = [round(thin.fps(t, t + 1)) for t in
                  (window[0] + i for i in range(int(window[1] - window[0])))]
    low = subscriber()
    receivers = thin.last["receivers"]
    print(f"\n400 kbit/s + 3 %: low in {took_low:.1f} s; on low {fps:.1f} fps; audio gaps "
          f"heard {audible} (arrival {arrival}, audio missing {missing}); relay since the "
          f"switch {low['video']['since_restart']}, retransmits {low['video']['retransmits']}"
          f" (over budget {low['video']['rtx_over_budget']}), PLIs "
          f"{low['video']['keyframe_requests']}; classroom buffers {receivers}; "
          f"controller {low['rate_control']}; fps second by second {per_second}; the "
          f"controller on low:\n{trace_text(window[0] - start - 1, window[1] - start)}")
    assert max(audible, default=0) < 200, state()
    assert fps >= 12, state()

    # lifted: high within 20 s (probes pad before each step up)
    lab.loss(0)
    lab.unshape()
    t_lift = time.monotonic() - start
    took_high = await wait_for(lambda: tier() == "high", 20, "high within 20 s of the lift",
                               state)
    up = subscriber()["rate_control"]
    print(f"lifted: high in {took_high:.1f} s (probes passed {up['probes_passed']}, "
          f"failed {up['probes_failed']}, padding sent "
          f"{subscriber()['video']['padding_octets']} B); the controller from the lift:\n"
          f"{trace_text(t_lift - 1)}")

    # 100 kbit/s: audio only, audio continuous
    lab.shape(100)
    took_audio = await wait_for(lambda: tier() == "audio", 15, "audio-only at 100 kbit/s",
                                state)
    t_audio = time.monotonic()
    while time.monotonic() - t_audio < 6:
        assert tier() == "audio", state()
        await asyncio.sleep(0.2)
    window = (t_audio + 1, time.monotonic() - 0.5)
    frames = thin.audio_frames_at(window[1]) - thin.audio_frames_at(window[0])
    audible = thin.gaps("audible_gaps", *window)
    print(f"100 kbit/s: audio-only in {took_audio:.1f} s; {frames} audio frames in "
          f"{window[1] - window[0]:.1f} s; gaps heard {audible} (arrival "
          f"{thin.gaps('audio_gaps', *window)}); unconstrained classroom's tiers {wide_tiers}")
    assert frames >= 0.9 * 50 * (window[1] - window[0]), state()  # 20 ms frames
    assert max(audible, default=0) < 200, state()
    assert wide_tiers == {"high"}, wide_tiers
