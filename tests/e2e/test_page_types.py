"""The pages' scripts type-check (docs/pages.md): tsc --noEmit over classroom_web/static
with the typescript package-lock.json pins; every script says ``// @ts-check``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "classroom_web" / "static"
TSC = REPO / "node_modules" / ".bin" / "tsc"


def test_every_page_script_is_type_checked():
    scripts = sorted(STATIC.glob("*.js"))
    assert len(scripts) >= 20, scripts
    unchecked = [p.name for p in scripts
                 if not p.read_text(encoding="utf-8").startswith("// @ts-check")]
    assert unchecked == []


def test_tsc_finds_no_type_error():
    if shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/test installs nodejs and npm)")
    if not TSC.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (scripts/test installs nodejs and npm)")
        ci = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
        assert ci.returncode == 0, ci.stderr[-2000:]
    run = subprocess.run([str(TSC), "-p", "tsconfig.json"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
