"""The fan-out benchmark (loadtests/fanout.py) at a tiny size, so its pieces cannot rot: the
relay pinned apart from the load generator, light receivers counting every frame, and the
capacity search's bracket."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from loadtests.fanout import Bracket


def test_bracket_ramps_then_halves_to_the_resolution() -> None:
    bracket = Bracket(resolution=0.05)
    for n, holds in ((0, True), (10, True), (50, True)):
        bracket.record(n, holds)
    assert bracket.next(75) == 75 and not bracket.done
    bracket.record(75, True)
    assert bracket.next(75) == 112  # x1.5 while nothing has failed
    bracket.record(112, False)
    assert bracket.bad == 112 and bracket.next(75) == 93
    bracket.record(93, False)
    bracket.record(84, True)
    bracket.record(88, True)
    assert (bracket.good, bracket.bad) == (88, 93) and not bracket.done  # 5 > 4.4
    bracket.record(90, True)
    assert bracket.done and (bracket.good, bracket.bad) == (90, 93)
    bracket.record(20, False)  # a failure under a holding N is noise, not the bracket
    assert bracket.bad == 93
    near = Bracket(resolution=0.05)
    near.record(200, True, load=0.7)  # the relay's core already 70 % busy: smaller steps
    assert near.next(75) == 240


def test_fanout_benchmark_one_point_with_light_receivers(tmp_path) -> None:
    out = tmp_path / "fanout.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.fanout", "--subscribers", "3", "--window", "1.5",
         "--warmup", "0.5", "--client-procs", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    point = result["points"][0]
    assert point["subscribers"] == 3 and point["cpu"] > 0
    assert result["receivers"] == "light"
    # every subscriber counted frames at the socket: well over half of what was sent
    assert result["delivered_fps_ratio"] is not None and result["delivered_fps_ratio"] > 0.5
    assert point["sent_fps"] > 20
    observed = result["affinity"]["observed"]
    if len(os.sched_getaffinity(0)) > 1:  # the relay and the generator never share a CPU
        assert observed["product_relay"] and observed["generator"]
        assert not set(observed["product_relay"]) & set(observed["generator"]), observed
