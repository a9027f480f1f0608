"""`classroom doctor` against real parts: a TLS certificate on disk, a server started here,
a private coturn (a real TURN Allocate with REST credentials), real UDP binds, a
redis-server on a free port, the library's filesystem. Each check passes, and fails with
its fix line."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import ipaddress
import socket
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signaling import doctor
from tests import coturn
from tests.helpers import RedisServer, free_port, start_server
from tests.tls_certs import make_cert

TURN_SECRET = "doctor-turn-secret-0123456789"


def cert_valid_for(folder: Path, days: float, host: str = "classroom.test") -> Path:
    """A self-signed certificate for ``host`` whose not-after is ``days`` from now."""
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=100))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(key, hashes.SHA256()))
    path = folder / f"cert-{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_certificate(tmp_path):
    good = cert_valid_for(tmp_path, 90)
    result = doctor.check_tls(good, None, "https://classroom.test")
    assert result.status == doctor.OK and "(90.0 days)" in result.detail, result
    soon = doctor.check_tls(cert_valid_for(tmp_path, 10), None)
    assert soon.status == doctor.WARN and "certbot" in soon.fix
    expired = doctor.check_tls(cert_valid_for(tmp_path, -1), None)
    assert expired.status == doctor.FAIL and "EXPIRED" in expired.detail
    assert "systemctl reload classroom" in expired.fix
    other_host = doctor.check_tls(good, None, "https://school.example")
    assert other_host.status == doctor.FAIL and "school.example" in other_host.fix
    cert, key = make_cert(tmp_path, "node", ["127.0.0.1"])
    assert doctor.check_tls(cert, key, "https://127.0.0.1:8443").status == doctor.FAIL  # 2 days
    _, other_key = make_cert(tmp_path, "other", ["127.0.0.1"])
    mismatch = doctor.check_tls(cert, other_key)
    assert mismatch.status == doctor.FAIL and "--tls-key" in mismatch.fix
    missing = doctor.check_tls(tmp_path / "nope.pem", None)
    assert missing.status == doctor.FAIL and "fullchain.pem" in missing.fix
    assert doctor.check_tls(None, None).status == doctor.SKIP


async def test_public_url_and_clock_from_a_running_server():
    server = await start_server()
    try:
        result, offset = await doctor.check_public_url(server.base_url, timeout=5)
        assert result.status == doctor.OK and "200" in result.detail
        assert offset is not None and abs(offset) < 1.5  # the Date header has whole seconds
        assert doctor.check_clock({"public URL": offset}).status == doctor.OK
    finally:
        await server.close()
    closed, _ = await doctor.check_public_url(server.base_url, timeout=2)
    assert closed.status == doctor.FAIL and "systemctl status classroom" in closed.fix


async def test_public_url_not_ready_and_clock_far_off():
    """A node whose store is down answers 503; a machine whose clock is an hour off."""
    async def readyz(request):
        date = email.utils.formatdate(time.time() - 3600, usegmt=True)
        return web.json_response({"ok": False, "store_reachable": False}, status=503,
                                 headers={"Date": date})

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        result, offset = await doctor.check_public_url(f"http://127.0.0.1:{port}", timeout=5)
    finally:
        await runner.cleanup()
    assert result.status == doctor.FAIL and "503" in result.detail
    assert "Redis" in result.fix
    clock = doctor.check_clock({"public URL": offset, "Redis": None})
    assert clock.status == doctor.FAIL and "-3600" in clock.detail[:40] + clock.detail
    assert "chrony" in clock.fix


@pytest.fixture(scope="module")
def turnserver():
    ok, why = coturn.available()
    if not ok:
        pytest.skip(why)
    with coturn.Coturn("127.0.0.1", TURN_SECRET) as server:
        yield server


async def test_turn_allocate(turnserver):
    urls = [turnserver.url("udp"), turnserver.url("tcp")]
    results = await doctor.check_turn(urls, TURN_SECRET, timeout=5)
    assert [r.status for r in results] == [doctor.OK, doctor.OK], results
    assert all("allocated relay 127.0.0.1:" in r.detail for r in results)
    wrong = await doctor.check_turn(urls[:1], "not-the-secret", timeout=5)
    assert wrong[0].status == doctor.FAIL and "401" in wrong[0].detail
    assert "static-auth-secret" in wrong[0].fix
    dead_udp = f"turn:127.0.0.1:{free_port()}?transport=udp"
    dead_tcp = f"turn:127.0.0.1:{free_port()}?transport=tcp"
    silent, refused = await doctor.check_turn([dead_udp, dead_tcp], TURN_SECRET, timeout=1.5)
    assert silent.status == doctor.FAIL and "systemctl status coturn" in silent.fix
    assert refused.status == doctor.FAIL and "listening-port" in refused.fix
    no_secret = await doctor.check_turn(urls[:1], None)
    assert no_secret[0].status == doctor.FAIL and "--turn-secret" in no_secret[0].fix
    assert (await doctor.check_turn([], None))[0].status == doctor.SKIP


def test_media_ports():
    low = free_port()
    held = []
    for port in (low, low + 1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip(f"UDP port {port} in use")
        held.append(sock)
    try:
        full = doctor.check_rtc_ports((low, low + 1), "127.0.0.1")
        assert full.status == doctor.FAIL and "0 of 2 free" in full.detail
        assert "ss -ulpn" in full.fix
        partial = doctor.check_rtc_ports((low, low + 3), "127.0.0.1")
        assert partial.status in (doctor.WARN, doctor.FAIL)
    finally:
        for sock in held:
            sock.close()
    assert doctor.check_rtc_ports((low, low + 1), "127.0.0.1").status == doctor.OK
    assert doctor.check_rtc_ports(None).status == doctor.SKIP


async def test_redis_and_its_clock():
    redis = RedisServer()
    redis.start()
    try:
        result, offset = await doctor.check_redis(redis.url, timeout=3)
        assert result.status == doctor.OK and "PONG" in result.detail
        assert offset is not None and abs(offset) < 0.5
        clock = doctor.check_clock({"Redis": offset, "public URL": None})
        assert clock.status == doctor.OK and "Redis" in clock.detail
    finally:
        redis.stop()
    down, offset = await doctor.check_redis(redis.url, timeout=1)
    assert down.status == doctor.FAIL and offset is None
    assert "redis-server" in down.fix
    assert doctor.check_clock({"Redis": None}).status == doctor.SKIP


def test_library(tmp_path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "seg.webm").write_bytes(b"x" * 10_000)
    ok = doctor.check_library(tmp_path, 1.0)
    assert ok.status in (doctor.OK, doctor.WARN) and "quota 1 GB" in ok.detail
    huge = doctor.check_library(tmp_path, 1e9)  # an exabyte: the disk fills first
    assert huge.status == doctor.FAIL and "lower --library-quota-gb" in huge.fix
    tiny = doctor.check_library(tmp_path, 1e-5)  # 10 kB quota, 10 kB used
    assert tiny.status == doctor.WARN and "quota" in tiny.fix
    gone = doctor.check_library(tmp_path / "missing", None)
    assert gone.status == doctor.FAIL and "mkdir -p" in gone.fix


def test_versions():
    ok = doctor.check_versions()
    assert ok.status == doctor.OK, ok
    assert doctor.supported_ranges().keys() == {"aiortc", "av"}
    old = doctor.check_versions({"aiortc": "1.8.0", "av": "18.1.0"},
                                {"aiortc": ">=1.9,<2", "av": ">=12.0"})
    assert old.status == doctor.FAIL and "pip install 'aiortc>=1.9,<2'" in old.fix
    assert doctor._satisfies("1.16.0", ">=1.9,<2") and not doctor._satisfies("2.0", "<2")
    assert doctor._satisfies("12.3.0", "~=12.0") and not doctor._satisfies("13.0", "~=12.0")


async def test_command_line_exit_status(tmp_path, turnserver):
    """The checklist as printed: exit 0 when nothing failed, 1 with the fix lines."""
    server = await start_server()
    redis = RedisServer()
    redis.start()
    try:
        async def run(*args: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signaling.cli", "doctor", "--timeout", "3", *args,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode, out.decode()

        low = free_port()
        code, out = await run("--public-url", server.base_url, "--redis-url", redis.url,
                              "--turn-url", turnserver.url("udp"), "--turn-secret", TURN_SECRET,
                              "--rtc-ports", f"{low}-{low}", "--rtc-host", "127.0.0.1",
                              "--library", str(tmp_path), "--tls-cert",
                              str(cert_valid_for(tmp_path, 60, "127.0.0.1")))
        assert code == 0, out
        assert out.count("[ ok ]") >= 7 and "0 failed" in out and "fix:" not in out, out
        code, out = await run("--public-url", server.base_url, "--turn-url",
                              turnserver.url("udp"), "--turn-secret", "wrong",
                              "--library", str(tmp_path / "missing"))
        assert code == 1, out
        assert "[FAIL] TURN" in out and "[FAIL] library disk" in out and "[ ok ] public URL" in out
        assert out.count("fix:") == 2 and "2 failed" in out
    finally:
        redis.stop()
        await server.close()
