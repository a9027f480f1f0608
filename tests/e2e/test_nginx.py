"""deploy/nginx/classroom.conf in front of `classroom serve`, with Debian's nginx.

The test runs the shipped site file (only ports, upstream and certificate paths replaced)
inside a minimal nginx.conf under a temporary prefix, nginx listening with TLS on this
machine's LAN address. Chromium (self-signed certificate accepted, fake camera) opens the
teacher console and a classroom through it over https: a secure context, the WebSocket
upgrade goes through, media flows (WebRTC goes straight to the relay, not through nginx).
The server believes nginx's X-Forwarded-For (loopback peer): its log shows the browser's
address, not nginx's; the CSP names the public wss origin from the forwarded host.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.links import lan_address
from tests.e2e.conftest import AUTOPLAY_ALLOWED, BASE_ARGS, REPO, ServerProcess
from tests.e2e.pages import CHROMIUM, press, stats, wait_media_rising, wait_stat_above, wait_until
from tests.helpers import free_port
from tests.tls_certs import insecure_client_context, make_cert

NGINX = "/usr/sbin/nginx"
SITE = REPO / "deploy" / "nginx" / "classroom.conf"
LAN = lan_address()
pytestmark = [
    pytest.mark.skipif(not Path(NGINX).exists(), reason=f"{NGINX} missing (apt-get install nginx)"),
    pytest.mark.skipif(LAN is None, reason="no non-loopback IPv4 address for nginx to listen on"),
]


@pytest.fixture(scope="module")
def browser(playwright_instance: Any) -> Iterator[Any]:
    """This module's Chromium: fake camera, the test's self-signed certificate accepted."""
    args = BASE_ARGS + [AUTOPLAY_ALLOWED, "--ignore-certificate-errors"]
    launched = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=args)
    yield launched
    launched.close()


class Nginx:
    """Debian's nginx with the shipped site, its own prefix folder, in the foreground."""

    def __init__(self, upstream_port: int, folder: Path) -> None:
        self.prefix = folder
        self.tls_port, self.http_port = free_port(), free_port()
        cert, key = make_cert(folder, "nginx", [str(LAN), "127.0.0.1"])
        site = SITE.read_text()
        for old, new in {
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
            "listen 80;": f"listen {LAN}:{self.http_port};",
            "listen 443 ssl;": f"listen {LAN}:{self.tls_port} ssl;",
            "/etc/ssl/classroom/fullchain.pem": str(cert),
            "/etc/ssl/classroom/privkey.pem": str(key),
        }.items():
            assert old in site, f"{SITE} no longer has {old!r}"
            site = site.replace(old, new)
        temp = "\n".join(f"  {kind}_temp_path {folder}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = folder / "nginx.conf"
        self.conf.write_text(
            f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
            f"error_log {folder}/error.log info;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n  access_log {folder}/access.log;\n{temp}\n{site}\n}}\n")
        self.command = [NGINX, "-p", str(folder), "-c", str(self.conf),
                        "-e", str(folder / "error.log")]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        check = subprocess.run([*self.command, "-t"], capture_output=True, text=True, timeout=20)
        assert check.returncode == 0, f"nginx -t refused the site:\n{check.stderr}"
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1,
                                            context=insecure_client_context()) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx not up:\n{(self.prefix / 'error.log').read_text()}")
            time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"https://{LAN}:{self.tls_port}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_lesson_through_nginx_tls_front(open_page: Any) -> None:
    folder = Path(tempfile.mkdtemp(prefix="classroom-nginx-"))
    srv = ServerProcess([], folder)
    nginx = Nginx(srv.port, folder)
    srv.extra_args = ["--public-url", nginx.base]
    srv.start()
    try:
        nginx.start()
        assert f"links use       {nginx.base}" in srv.log_tail(60)

        # plain http on the front: a redirect to https, nothing served
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"http://{LAN}:{nginx.http_port}/teach/x", timeout=5)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"].startswith(f"https://{LAN}")

        # the page through the proxy names the public wss origin (forwarded host)
        with urllib.request.urlopen(f"{nginx.base}/teach/x", timeout=5,
                                    context=insecure_client_context()) as resp:
            assert f"wss://{LAN}:{nginx.tls_port}" in resp.headers["Content-Security-Policy"]

        lesson = "via-nginx"
        teacher = open_page(f"{nginx.base}/teach/{lesson}#token={srv.token('teacher', lesson)}")
        assert teacher.evaluate("() => window.isSecureContext") is True
        wait_stat_above(teacher, "framesEncoded", 0, 20)
        press(teacher, "start-lesson")
        wait_until(lambda: stats(teacher)["lessonState"] == "live", 10, "lesson did not start")
        room = open_page(f"{nginx.base}/class/{lesson}"
                         f"#token={srv.token('classroom', lesson, name='河口教学点')}")
        wait_media_rising(room, timeout=20)
        assert room.sockets == [f"wss://{LAN}:{nginx.tls_port}/ws"], room.sockets

        # the client address in the server's log is the browser's (X-Forwarded-For from the
        # loopback proxy), not nginx's 127.0.0.1
        wait_until(lambda: f'"addr": "{LAN}"' in srv.log_tail(200), 5,
                   "the hello log does not show the forwarded client address")
        assert '"addr": "127.0.0.1"' not in srv.log_tail(200)
    finally:
        nginx.stop()
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)
