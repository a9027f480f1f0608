"""`classroom serve` prints where it listens and links people can use; `classroom token
--link` prints a whole link; TLS and link flags refuse bad input with exit 2 and one line.

Every test runs the real command in a subprocess, as a person or systemd would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from signaling.auth import verify_token
from signaling.links import lan_address
from tests.helpers import free_port
from tests.tls_certs import insecure_client_context, make_cert

REPO = Path(__file__).resolve().parents[2]
SECRET = "links-test-secret-0123456789abcdef"


def _classroom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "signaling.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


class Serve:
    """`classroom serve ...` until its printed links are complete."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.out = tmp / f"serve-{self.port}.out"
        with open(self.out, "w") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve", "--port", str(self.port),
                 "--secret", SECRET, "--library", str(tmp / "library"), *args],
                cwd=REPO, stdout=fh, stderr=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def text(self, until: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.out.read_text()
            if until in text:
                return text
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {until!r} in the output:\n{text}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _link_token(link: str, page: str, lesson: str, role: str) -> dict:
    parts = urlsplit(link)
    assert unquote(parts.path) == f"/{page}/{lesson}", link
    assert parts.fragment.startswith("token="), link
    claims = verify_token(SECRET, parts.fragment.removeprefix("token="))
    assert (claims.role.value, claims.lesson) == (role, lesson)
    return {"base": f"{parts.scheme}://{parts.netloc}", "claims": claims}


@pytest.mark.skipif(lan_address() is None, reason="no non-loopback IPv4 address here")
def test_no_demo_on_all_interfaces_prints_lan_links(tmp_path: Path) -> None:
    srv = Serve(tmp_path, "--host", "0.0.0.0", "--no-demo")
    try:
        text = srv.text("a whole link")
    finally:
        srv.stop()
    lan = lan_address()
    assert f"listening on http://0.0.0.0:{srv.port} (all interfaces: " in text
    assert f"{lan} (" in text  # the addresses it listens on are named
    base = f"http://{lan}:{srv.port}"
    assert f"teacher console : {base}/teach/{{lesson}}#token=<teacher token>" in text
    assert f"classroom (TV)  : {base}/class/{{lesson}}#token=<classroom token>" in text
    assert f"--link --public-url {base} --library {tmp_path / 'library'}" in text
    assert "browsers open cameras only on https pages" in text  # plain http on a LAN address
    assert "127.0.0.1:" not in text.split("links use", 1)[1]
    assert SECRET not in text


def test_public_url_builds_the_demo_links(tmp_path: Path) -> None:
    srv = Serve(tmp_path, "--public-url", "https://classroom.school.example/")
    try:
        text = srv.text("metrics:")
    finally:
        srv.stop()
    assert f"listening on http://127.0.0.1:{srv.port}" in text
    links = re.findall(r"(https?://\S+#token=\S+)", text)
    assert len(links) == 3, text
    teacher = _link_token(links[0], "teach", "demo", "teacher")
    assert teacher["base"] == "https://classroom.school.example"
    _link_token(links[1], "class", "demo", "classroom")
    assert "browsers open cameras only on https pages" not in text


def test_tls_serves_https_and_prints_https_links(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "links", ["127.0.0.1"])
    srv = Serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        text = srv.text("metrics:")
        link = re.findall(r"(https://\S+#token=\S+)", text)[0]
        assert _link_token(link, "teach", "demo", "teacher")["base"] == \
            f"https://127.0.0.1:{srv.port}"
        page_url = link.split("#", 1)[0]
        with urllib.request.urlopen(page_url, timeout=5,
                                    context=insecure_client_context()) as resp:
            assert resp.status == 200
            assert f"wss://127.0.0.1:{srv.port}" in resp.headers["Content-Security-Policy"]
    finally:
        srv.stop()
    assert f"listening on https://127.0.0.1:{srv.port}" in text


def test_token_link_prints_a_whole_link(tmp_path: Path) -> None:
    common = ["--secret", SECRET, "--library", str(tmp_path)]
    for role, page in (("teacher", "teach"), ("classroom", "class"), ("student", "answer")):
        done = _classroom("token", "--role", role, "--lesson", "数学 1", "--name", "一班",
                          "--link", "--public-url", "https://school.example/", *common)
        assert done.returncode == 0, done.stderr
        link = done.stdout.strip()
        assert link.startswith(f"https://school.example/{page}/"), link
        assert _link_token(link, page, "数学 1", role)["claims"].name == "一班"
    # the base from the environment, as the systemd unit sets it
    done = _classroom("token", "--role", "teacher", "--lesson", "L", "--link", *common,
                      env={"CLASSROOM_PUBLIC_URL": "https://env.example:8443"})
    assert done.stdout.startswith("https://env.example:8443/teach/L#token="), done.stdout
    # no --link: the token alone, as before
    done = _classroom("token", "--role", "teacher", "--lesson", "L", *common)
    assert verify_token(SECRET, done.stdout.strip()).lesson == "L"


@pytest.mark.parametrize("args,says", [
    (["token", "--role", "admin", "--lesson", "x", "--link"], "no page to link for role"),
    (["token", "--role", "teacher", "--lesson", "x", "--link", "--public-url", "school"],
     "--public-url must be an http:// or https:// URL"),
    (["serve", "--public-url", "ftp://school.example"], "--public-url must be"),
    (["serve", "--trusted-proxy", "not-an-address"], "--trusted-proxy wants"),
    (["serve", "--tls-cert", "{dir}/missing.crt", "--tls-key", "{dir}/missing.key"],
     "cannot read TLS certificate"),
    (["serve", "--tls-cert", "{dir}/garbage.pem", "--tls-key", "{dir}/garbage.pem"],
     "unusable TLS certificate"),
    (["serve", "--tls-cert", "{dir}/a.crt", "--tls-key", "{dir}/b.key"],
     "unusable TLS certificate"),  # a key that does not match
    (["serve", "--tls-cert", "{dir}/a.crt"], "--tls-cert and --tls-key go together"),
    (["serve", "--tls-cert", "{dir}/a.crt", "--tls-key", "{dir}"],  # unreadable, even as root
     "cannot read TLS key"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    make_cert(tmp_path, "a", ["127.0.0.1"])
    make_cert(tmp_path, "b", ["127.0.0.1"])
    (tmp_path / "garbage.pem").write_text("garbage\n")
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    done = _classroom(*args, "--secret", SECRET, "--library", str(tmp_path / "library"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr
