"""The two-way benchmark (loadtests/interactive.py) end to end at a small size, so the
load generator (looped sources, thumbnail/stage camera sizes, counting receivers with the
socket fast path) cannot rot: every classroom must get the stage media after the call."""

from __future__ import annotations

import json
import subprocess
import sys


def test_interactive_benchmark_runs_and_reaches_every_classroom(tmp_path) -> None:
    out = tmp_path / "interactive.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.interactive", "--classrooms", "4", "--seconds", "2",
         "--warmup", "0.5", "--switches", "1", "--grid-slots", "2", "--teacher-width", "640",
         "--teacher-height", "360", "--teacher-bitrate", "600000", "--json", str(out)],
        capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    for field in ("cpu_cores", "rss_mb", "p95_stage_forward_ms", "stage_switch_ms"):
        assert field in result
    assert result["cpu_cores"] > 0 and result["rss_mb"] > 0
    switch = result["stage_switches"][0]
    assert switch["reached"] == switch["of"] == 3, switch
    assert result["stage_switch_ms"] is not None
    assert result["stage_video_fps_min"] > 0  # stage video kept flowing in the window
    page = result["grid_page"]  # the teacher turned to the grid's second page
    assert page["tiles"] == page["switched"] == page["tiles_flowing_after"] == 2, page
    states = result["connection_states"]
    assert set(states) == {"publish:connected", "grid:connected", "uplink:connected",
                           "subscribe:connected"}, states
