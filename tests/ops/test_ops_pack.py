"""The shipped ops pack (deploy/prometheus, deploy/grafana): promtool checks and unit tests,
and every metric a rule or dashboard names is one the server exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import aiohttp
import pytest
from prometheus_client import generate_latest

from signaling import ops_metrics
from signaling.tls import CertReloader, load_context
from tests.helpers import eventually, start_server
from tests.ops.promql import (
    DASHBOARDS,
    PROMETHEUS,
    PROMETHEUS_OWN,
    REPO,
    RULE_FILES,
    dashboard_exprs,
    documented_names,
    exported_names,
    metric_names,
    recorded_names,
    rule_exprs,
)
from tests.tls_certs import make_cert

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing (scripts/test installs the Debian package "
                             "prometheus)")


def promtool(*args: str) -> str:
    proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          cwd=PROMETHEUS)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@needs_promtool
def test_promtool_checks_config_rules_and_unit_tests():
    out = promtool("check", "config", "prometheus.yml")
    assert "2 rule files found" in out
    out = promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert out.count("SUCCESS") == 2
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    assert "SUCCESS" in promtool("test", "rules", *tests)


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path):
    """A threshold moved so the bad school no longer alerts: the unit tests catch it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in RULE_FILES:
        text = path.read_text()
        text = text.replace("school:classroom_client_freeze_ratio:rate5m > 0.05",
                            "school:classroom_client_freeze_ratio:rate5m > 0.5")
        (rules / path.name).write_text(text)
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(PROMETHEUS / "tests" / "alerts_test.yml", tests)
    proc = subprocess.run([PROMTOOL, "test", "rules", str(tests / "alerts_test.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "SchoolVideoFreezing" in proc.stdout + proc.stderr


def test_every_alert_is_unit_tested_and_documented():
    alerts = set(re.findall(r"^\s*- alert:\s*(\S+)",
                            (PROMETHEUS / "rules" / "alert_rules.yml").read_text(), re.M))
    tested = "".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.yml"))
    runbook = (REPO / "docs" / "operations.md").read_text().lower()
    assert len(alerts) >= 12
    for alert in alerts:
        assert f"alertname: {alert}" in tested, f"{alert} has no promtool test"
        assert f"### {alert.lower()}" in runbook, f"{alert} not in docs/operations.md"


def test_metric_names_parser():
    assert metric_names('sum by (school, le) (rate(a_bucket{role="x",s=~"$school"}[5m])) '
                        '/ on (school) group_left b:c:d - 14 * 86400 + 1e+09') == {
        "a_bucket", "b:c:d"}
    assert metric_names('count(ALERTS{alertstate="firing"}) or vector(0)') == {"ALERTS"}


def served_expiry(text: str) -> dict[str, float]:
    """path -> not-after of classroom_tls_certificate_expiry_timestamp_seconds."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^classroom_tls_certificate_expiry_timestamp_seconds\{path="([^"]*)"\} (\S+)$',
        text, re.M)}


@pytest.fixture
async def exposition(tmp_path):
    """A running server's /metrics, serving a TLS certificate (the reloader sets the
    expiry gauge as `classroom serve --tls-cert` does), once the library's first walk is
    done: it runs in a thread after the app starts, and until it ends a fresh server
    rightly has no classroom_library_bytes yet (the scrape is not made to wait for it)."""
    cert, key = make_cert(tmp_path, "node", ["127.0.0.1"])
    CertReloader(load_context(cert, key), cert, key)
    server = await start_server(library_quota_gb=1.0)
    try:
        async with aiohttp.ClientSession() as http:
            scraped: list[str] = []

            async def walked() -> bool:
                async with http.get(server.base_url + "/metrics") as resp:
                    assert resp.status == 200
                    scraped[:] = [await resp.text()]
                return "classroom_library_bytes" in exported_names(scraped[0])

            await eventually(walked, timeout=10)
            yield scraped[0]
    finally:
        await server.close()
        ops_metrics.COLLECTOR.cert_expiry = {}


async def test_tls_expiry_follows_a_reload(tmp_path):
    """The gauge shows the served certificate's not-after, and the new one after SIGHUP's
    reload; a failed reload keeps the old value (the old certificate stays served)."""
    cert, key = make_cert(tmp_path, "a", ["127.0.0.1"])
    reloader = CertReloader(load_context(cert, key), cert, key)
    try:
        first = served_expiry(generate_latest().decode())
        assert list(first) == [str(cert)]
        assert abs(first[str(cert)] - (time.time() + 2 * 86400)) < 120
        time.sleep(1.1)  # a not-after has whole seconds: the renewed one is later
        renewed_cert, renewed_key = make_cert(tmp_path, "b", ["127.0.0.1"])
        key.write_bytes(renewed_key.read_bytes())
        cert.write_bytes(make_cert(tmp_path, "c", ["127.0.0.1"])[0].read_bytes())
        assert not await reloader.reload()  # c's certificate with b's key: refused
        assert served_expiry(generate_latest().decode()) == first
        cert.write_bytes(renewed_cert.read_bytes())
        assert await reloader.reload()
        second = served_expiry(generate_latest().decode())[str(cert)]
        assert second > first[str(cert)]
    finally:
        ops_metrics.COLLECTOR.cert_expiry = {}


async def test_rules_and_dashboards_name_only_exported_metrics(exposition, tmp_path):
    exported = exported_names(exposition)
    for name in ("classroom_build_info", "classroom_library_bytes",
                 "classroom_library_quota_bytes", "classroom_library_filesystem_free_bytes",
                 "classroom_event_loop_lag_seconds_bucket", "classroom_store_up",
                 "classroom_recording_errors_total",
                 "classroom_tls_certificate_expiry_timestamp_seconds"):
        assert name in exported, name
    known = exported | documented_names() | PROMETHEUS_OWN
    recorded = recorded_names()
    unknown: dict[str, set[str]] = {}
    exprs = list(rule_exprs())
    assert len(exprs) >= 25
    for board in DASHBOARDS:
        board_exprs = list(dashboard_exprs(board))
        assert len(board_exprs) >= 8, board.name
        exprs += [(f"{board.name}: {title}", expr) for title, expr in board_exprs]
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, (where, expr)
        missing = names - known - recorded
        if missing:
            unknown[where] = missing
    assert not unknown, f"metrics nobody exports or documents: {unknown}"
    if PROMTOOL is not None:  # every dashboard expression parses (as a rule's expr)
        lines = ["groups:", "  - name: dashboards", "    rules:"]
        for i, (_where, expr) in enumerate(exprs):
            expr = re.sub(r"\$\{?\w+\}?", "x", expr)
            lines += [f"      - record: dashboard_expr_{i}", f"        expr: {json.dumps(expr)}"]
        (tmp_path / "dash.yml").write_text("\n".join(lines) + "\n")
        promtool("check", "rules", str(tmp_path / "dash.yml"))


def test_dashboards_and_provisioning():
    uids = set()
    for board in DASHBOARDS:
        data = json.loads(board.read_text())
        assert data["uid"] not in uids
        uids.add(data["uid"])
        sources = {json.dumps(p["datasource"], sort_keys=True) for p in data["panels"]
                   if "datasource" in p}
        assert sources == {'{"type": "prometheus", "uid": "classroom-prometheus"}'}
    assert {"classroom-lesson-overview", "classroom-school-quality",
            "classroom-relay-internals", "classroom-recording"} <= uids
    grafana = REPO / "deploy" / "grafana" / "provisioning"
    datasource = (grafana / "datasources" / "classroom.yml").read_text()
    assert "uid: classroom-prometheus" in datasource and "type: prometheus" in datasource
    provider = (grafana / "dashboards" / "classroom.yml").read_text()
    assert "type: file" in provider and "path:" in provider
