"""A private coturn (Debian's /usr/bin/turnserver) for tests: its own config in a temp folder.

    with Coturn("10.200.7.1", secret="s3", allowed_peers=["10.200.7.1"], tls=(crt, key)) as t:
        t.url("tcp")   # turn:10.200.7.1:PORT?transport=tcp

It runs the REST-credential scheme of deploy/coturn/turnserver.conf (use-auth-secret), denies
private peers except the ones listed (as the production file denies all but the media
server), and logs to a file the test can read when something fails.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

REALM = "classroom.test"
REPO = Path(__file__).resolve().parents[1]


def _free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def available() -> tuple[bool, str]:
    if shutil.which("turnserver") is None:
        return False, "coturn not installed (scripts/test installs the Debian package coturn)"
    return True, ""


class Coturn:
    """One turnserver process on ``host``: TURN on UDP+TCP ``port``, TLS on ``tls_port``."""

    def __init__(self, host: str, secret: str, *, allowed_peers: list[str] = (),
                 tls: tuple[Path, Path] | None = None, loopback_peers: bool = False) -> None:
        self.host = host
        self.secret = secret
        self.dir = Path(tempfile.mkdtemp(prefix="classroom-coturn-"))
        self.port = _free_port_on(host) if host != "127.0.0.1" else free_port()
        self.tls_port = _free_port_on(host) if tls else None
        self.allowed_peers = list(allowed_peers)
        self.tls = tls
        self.loopback_peers = loopback_peers
        self.log = self.dir / "turn.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, transport: str = "udp") -> str:
        if transport == "tls":
            return f"turns:{self.host}:{self.tls_port}?transport=tcp"
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def _config(self) -> str:
        relay_low = 49152 + (self.port % 8000)  # a relay range of our own, per instance
        lines = [
            f"listening-ip={self.host}", f"relay-ip={self.host}",
            f"listening-port={self.port}",
            f"min-port={relay_low}", f"max-port={relay_low + 200}",
            "use-auth-secret", f"static-auth-secret={self.secret}", f"realm={REALM}",
            "fingerprint", "no-cli", "no-multicast-peers", "no-dtls",
            f"userdb={self.dir / 'turndb'}", f"pidfile={self.dir / 'turn.pid'}",
            f"log-file={self.log}", "simple-log", "no-stdout-log", "verbose",
            # the production rule: no private peers but the media server
            "denied-peer-ip=10.0.0.0-10.255.255.255",
            "denied-peer-ip=172.16.0.0-172.31.255.255",
            "denied-peer-ip=192.168.0.0-192.168.255.255",
            *(f"allowed-peer-ip={ip}" for ip in self.allowed_peers),
        ]
        if self.loopback_peers:  # refused by default, as in production
            lines.append("allow-loopback-peers")
        if self.tls:
            cert, key = self.tls
            lines += [f"tls-listening-port={self.tls_port}", f"cert={cert}", f"pkey={key}"]
        else:
            lines.append("no-tls")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        conf = self.dir / "turnserver.conf"
        conf.write_text(self._config())
        self.start_with(conf, timeout)

    def start_with(self, conf: Path, timeout: float = 10.0) -> None:
        """Run turnserver on ``conf`` (its ports must be ``port``/``tls_port``)."""
        self.proc = subprocess.Popen(["turnserver", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        deadline = time.monotonic() + timeout
        while ports:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection((self.host, ports[0]), timeout=0.2):
                    ports.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"turnserver not listening: {self.tail()}") from None
                time.sleep(0.05)

    def log_text(self) -> str:
        """The whole log so far ("" before it exists): slice it to see one step's sessions."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None

    def __enter__(self) -> Coturn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
