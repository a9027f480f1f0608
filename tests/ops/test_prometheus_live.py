"""Debian's prometheus (started here on loopback, its own temp storage) scraping a server
with a lesson in progress, loaded with the shipped rules (deploy/prometheus/rules).

The lesson: a teacher publishing (encoded video + a tone), one classroom of school
``山村小学`` in a network namespace behind a link dropping 25 % of the UDP arriving there
(tests/netlab.py), one classroom of ``城区一小`` on loopback. Both are aiortc classrooms
reporting what they decoded as the pages do (tests/ops/reporting_classroom.py), every 5 s.

Checked: the key series exist with the right labels (no peer in any client series); every
shipped rule evaluates without error on the real data; SchoolAudioConcealmentHigh fires
for the lossy school and not for the healthy one, whose ratio is there and low.

The one change to the shipped rules: every ``for:`` is cut to 1 s in the temporary copy
(a test cannot wait the 5 minutes); scrape and evaluation run every second.
Skipped, with the reason, where prometheus or network namespaces are missing.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from classroom_client import ClassroomClient
from classroom_client.media import EncodedVideoTrack, SyntheticAudioTrack
from tests.helpers import free_port, start_server
from tests.netlab import NetLab, available
from tests.ops.promql import PROMETHEUS, RULE_FILES

PROMETHEUS_BIN = shutil.which("prometheus")
pytestmark = [
    pytest.mark.skipif(PROMETHEUS_BIN is None,
                       reason="prometheus missing (scripts/test installs the Debian package)"),
    pytest.mark.skipif(not available()[0], reason=available()[1] or "netlab"),
]

LESSON = "ops-live"
LOSSY, HEALTHY = "山村小学", "城区一小"
LOSS_PERCENT = 25
CLIENT_LABELS = {"__name__", "job", "instance", "school", "role", "kind", "tier", "result", "le"}


class Reporter:
    """A reporting classroom subprocess; its JSON lines read by a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass


def start_prometheus(workdir: Path, target: str) -> tuple[subprocess.Popen, str]:
    rules = []
    for path in RULE_FILES:
        text = re.sub(r"^(\s*)for: \S+$", r"\1for: 1s", path.read_text(), flags=re.M)
        copy = workdir / path.name
        copy.write_text(text)
        rules.append(str(copy))
    scrape = (PROMETHEUS / "prometheus.yml").read_text()
    assert "job_name: classroom" in scrape  # the job the shipped alerts match
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": [{"job_name": "classroom", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}]}],
    }))
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "wb"))
    return proc, f"http://127.0.0.1:{port}"


async def api(http: aiohttp.ClientSession, base: str, path: str, **params: str) -> object:
    async with http.get(base + "/api/v1/" + path, params=params) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    return body["data"]


async def query(http, base, expr: str) -> list[dict]:
    return (await api(http, base, "query", query=expr))["result"]


async def until(check, timeout: float, what: str, trace=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s. {trace()}")
        await asyncio.sleep(0.5)


async def test_prometheus_scrapes_a_lesson_and_alerts_for_the_lossy_school():
    workdir = Path(tempfile.mkdtemp(prefix="classroom-prom-"))
    prom = None
    clients: list[ClassroomClient] = []
    try:
        with NetLab() as lab:
            server = await start_server(bind="0.0.0.0")
            port = server.base_url.rsplit(":", 1)[1]
            prom, prom_url = start_prometheus(workdir, f"127.0.0.1:{port}")
            try:
                teacher = ClassroomClient(server.base_url,
                                          server.token("teacher", LESSON, name="T",
                                                       school=HEALTHY))
                clients.append(teacher)
                await teacher.connect()
                await teacher.publish(EncodedVideoTrack(320, 180, 15, bitrate=300_000),
                                      SyntheticAudioTrack())
                await teacher.start_lesson()
                lab.loss(LOSS_PERCENT)
                args = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                lossy = Reporter(lab.popen(
                    sys.executable, "-m", "tests.ops.reporting_classroom",
                    f"http://{lab.host_ip}:{port}",
                    server.token("classroom", LESSON, name="lossy", school=LOSSY), **args))
                healthy = Reporter(subprocess.Popen(
                    [sys.executable, "-m", "tests.ops.reporting_classroom", server.base_url,
                     server.token("classroom", LESSON, name="healthy", school=HEALTHY)],
                    **args))
                await run_checks(prom_url, lossy, healthy, workdir)
                for reporter in (lossy, healthy):
                    reporter.proc.stdin.close()
            finally:
                for client in clients:
                    await client.close()
                await server.close()
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(10)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


async def run_checks(prom: str, lossy: Reporter, healthy: Reporter, workdir: Path) -> None:
    def trace() -> str:
        log = (workdir / "prometheus.log").read_text(errors="replace")[-1500:]
        return (f"lossy reports: {lossy.lines[-2:]}; healthy reports: {healthy.lines[-2:]}; "
                f"prometheus log: {log}")

    async with aiohttp.ClientSession() as http:
        async def ready():
            try:
                async with http.get(prom + "/-/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until(ready, 20, "prometheus ready", trace)
        t0 = time.monotonic()

        async def alert_state():
            alerts = (await api(http, prom, "alerts"))["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "SchoolAudioConcealmentHigh"
                    and a["state"] == "firing" and a["labels"].get("school") == LOSSY]

        firing = await until(alert_state, 45, "SchoolAudioConcealmentHigh firing for the "
                                              "lossy school", trace)
        fired_after = time.monotonic() - t0
        # the healthy school: its ratio is evaluated (two accepted reports) and low
        ratio = "school:classroom_client_audio_concealment_ratio:rate5m"

        async def healthy_ratio():
            rows = await query(http, prom, f'{ratio}{{school="{HEALTHY}"}}')
            return rows and rows[0]["value"][1] not in ("NaN",) and rows

        rows = await until(healthy_ratio, 20, "the healthy school's concealment ratio", trace)
        healthy_value = float(rows[0]["value"][1])
        lossy_value = float((await query(http, prom, f'{ratio}{{school="{LOSSY}"}}'))[0]
                            ["value"][1])
        assert healthy_value < 0.05 < lossy_value, (healthy_value, lossy_value, trace())
        alerts = (await api(http, prom, "alerts"))["alerts"]
        school_alerts = {(a["labels"]["alertname"], a["labels"].get("school"), a["state"])
                         for a in alerts if a["labels"].get("school")}
        assert not [a for a in school_alerts if a[1] == HEALTHY], school_alerts
        assert firing[0]["labels"]["severity"] == "warning"
        assert "山村小学" in firing[0]["annotations"]["summary"]

        # the key series, with their labels
        build = await query(http, prom, 'classroom_build_info{job="classroom"}')
        assert len(build) == 1 and {"version", "aiortc", "av"} <= build[0]["metric"].keys()
        assert (await query(http, prom, 'up{job="classroom"}'))[0]["value"][1] == "1"
        for expr in ('classroom_lessons_active >= 1', 'classroom_ws_connections >= 3',
                     'classroom_store_up == 1', 'classroom_library_filesystem_free_bytes > 0',
                     'sum(classroom_subscribers) >= 2',
                     'classroom_relay_forward_latency_seconds_bucket{kind="audio",le="+Inf"} > 0',
                     'classroom_event_loop_lag_seconds_count > 0',
                     'classroom_client_reports_total{role="classroom",result="accepted"} >= 4',
                     # recording rules over the real series
                     'instance:classroom_event_loop_lag_seconds:p99_5m >= 0',
                     'job:classroom_relay_forward_latency_seconds:p95_5m{kind="audio"} > 0',
                     'instance:classroom_library_filesystem_free:ratio > 0',
                     f'school:classroom_client_audio_only_ratio:rate15m{{school="{HEALTHY}"}}'
                     ' < 0.5',
                     'school:classroom_client_packets_lost:rate5m{kind="audio"} > 0'):
            assert await query(http, prom, expr), expr
        schools = {r["metric"]["school"] for r in await query(
            http, prom, 'classroom_client_audio_samples_total{role="classroom"}')}
        assert schools == {LOSSY, HEALTHY}, schools
        tiers = {r["metric"]["tier"] for r in await query(
            http, prom, "classroom_client_tier_seconds_total")}
        assert tiers and tiers <= {"high", "mid", "low", "audio-only"}, tiers
        series = await api(http, prom, "series", **{"match[]": '{__name__=~"classroom_client_.+"}'})
        assert len(series) >= 10
        extra = {k for s in series for k in s} - CLIENT_LABELS
        assert not extra, f"client series carry labels beyond school/role/kind/tier: {extra}"
        # every shipped rule evaluates on real data without an error
        groups = (await api(http, prom, "rules"))["groups"]
        assert {g["name"] for g in groups} == {"classroom-quality", "classroom-node",
                                                "classroom-alerts"}
        broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"]
                  if r["health"] != "ok"]
        assert not broken, broken
        freeze = await query(http, prom, "school:classroom_client_freeze_ratio:rate5m")
        print(f"\nconcealment alert fired {fired_after:.1f} s after prometheus was ready; "
              f"concealment ratio {LOSSY} {lossy_value:.3f}, {HEALTHY} {healthy_value:.4f}; "
              f"freeze ratio {[(r['metric']['school'], r['value'][1]) for r in freeze]}; "
              f"alerts {sorted(school_alerts)}")
