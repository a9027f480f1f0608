"""Browser fixtures for the quality test: the e2e ones (Chromium, pages), one backend."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures and the report hook, re-exported
    ServerProcess,
    browser,
    launch_browser,
    open_page,
    playwright_instance,
    pytest_runtest_makereport,
)


@pytest.fixture
def page_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """`classroom serve` (memory store, no recording) in a subprocess."""
    workdir = Path(tempfile.mkdtemp(prefix="classroom-quality-"))
    srv = ServerProcess(["--no-recording"], workdir)
    srv.start()
    yield srv
    srv.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\n--- server log ({srv.log_path}) ---\n{srv.log_tail(80)}")
