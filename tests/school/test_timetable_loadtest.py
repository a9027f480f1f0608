"""The timetable loadtest runs end to end with tiny parameters (its figures are checked
for presence and sense, not for the targets: those are for the full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_loadtest_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["--schools", "8", "--weeks", "1", "--sockets", "10", "--window", "0.5",
            "--settle", "0", "--queries", "10", "--json", str(out)]
    subprocess.run([sys.executable, "-m", "loadtests.timetable", *args], check=False,
                   timeout=120, capture_output=True)
    result = json.loads(out.read_text(encoding="utf-8"))
    for key in ("stats_query_p95_ms", "import_rows_per_second", "idle_devices_cpu",
                "baseline_cpu", "loadavg"):
        assert key in result
    assert result["import_rows"] == result["slots"] == 160
    assert result["sockets_open"] == result["sockets_still_open"] == 10
    assert result["term_totals"]["scheduled"] == 160
    assert 0 < result["term_totals"]["held"] <= 160
