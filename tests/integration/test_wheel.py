"""`pip install .` gives a product that runs without the repo checkout.

The wheel is built from this tree, unpacked into a folder of its own and run from another
working directory with that folder first on ``sys.path``: every page (the replay page's hls.js
included) must come from the installed files, and nothing installed may import ``tests``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
PAGES = ("/teach/demo", "/class/demo", "/library", "/replay/r1", "/vendor/hls.min.js",
         "/static/protocol.js")
# every page script (ES modules: one import missing from the wheel and the page is dead)
SCRIPTS = tuple(sorted(p.name for p in (REPO / "classroom_web" / "static").glob("*.js")))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(out.glob("shared_classroom-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_pages_and_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("tests/")]
    for needed in ("classroom_web/static/class.html", "recording/vendor/hls.light.min.js",
                   *(f"classroom_web/static/{name}" for name in SCRIPTS)):
        assert needed in names, needed
    with zipfile.ZipFile(wheel) as zf:
        for name in names:
            if not name.endswith(".py"):
                continue
            tree = ast.parse(zf.read(name), filename=name)
            for node in ast.walk(tree):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not [m for m in mods if m == "tests" or m.startswith("tests.")], name


def test_installed_wheel_serves_every_page(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)], capture_output=True, text=True, timeout=180)
    assert install.returncode == 0, install.stderr[-3000:]
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONUNBUFFERED="1")
    where = subprocess.run(
        [sys.executable, "-c", "import signaling, recording; print(signaling.__file__); "
         "print(recording.__file__)"], cwd=run_dir, env=env, capture_output=True, text=True,
        timeout=60)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling.cli", "serve", "--port", str(port), "--secret",
         "wheel-test-secret-0123456789abcdef", "--library", str(tmp_path / "lib")],
        cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "server not up within 30 s"
                time.sleep(0.1)
        for path in PAGES:
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                body = resp.read()
                assert resp.status == 200, path
                assert len(body) > 20, path
        for name in SCRIPTS:
            with urllib.request.urlopen(base + "/static/" + name, timeout=10) as resp:
                assert resp.headers.get_content_type() == "text/javascript", name
        with urllib.request.urlopen(base + "/vendor/hls.min.js", timeout=10) as resp:
            assert b"1.7.4" in resp.read()  # the version package.json pins
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
