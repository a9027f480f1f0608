"""TURN REST credentials (signaling/turn.py): the HMAC, the flags, and a real coturn's verdict."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from signaling.cli import main
from signaling.turn import (
    DEFAULT_TTL_SECONDS,
    TurnSettings,
    credentials,
    ice_servers_for,
    parse_turn_url,
    settings_from_args,
)
from tests import coturn

SECRET = "north-wind"


def test_credential_matches_a_known_computation() -> None:
    # printf '%s' '1700000000:classroom-0123456789' | openssl dgst -sha1 -hmac north-wind
    #   -binary | base64
    assert credentials(SECRET, "classroom-0123456789", 1000, now=1_699_999_000) == (
        "1700000000:classroom-0123456789", "vt4dn9r4I8oQ7M674r9UTcQ6siw=")


def test_credential_is_hmac_sha1_of_the_username_with_its_expiry() -> None:
    now = time.time()
    username, credential = credentials("other", "teacher-x", 600, now=now)
    expiry, _, peer = username.partition(":")
    assert int(expiry) == int(now) + 600 and peer == "teacher-x"
    want = hmac.new(b"other", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == want


def test_welcome_servers_carry_per_peer_credentials_never_the_secret() -> None:
    turn = TurnSettings(urls=("turn:t.example:3478?transport=udp",
                              "turns:t.example:443?transport=tcp"), secret=SECRET, ttl=3600)
    static = [{"urls": "stun:s.example:3478"}]
    a = ice_servers_for(static, turn, "classroom-a", now=1000)
    b = ice_servers_for(static, turn, "classroom-b", now=1000)
    assert a[0] == {"urls": "stun:s.example:3478"}
    assert a[1]["urls"] == list(turn.urls) and a[1]["username"] == "4600:classroom-a"
    assert a[1]["credential"] != b[1]["credential"]
    assert SECRET not in repr(a) + repr(turn)
    assert ice_servers_for(static, None, "x") == static


@pytest.mark.parametrize("url", ["turn:host", "turn:10.0.0.1:3478?transport=tcp",
                                 "turns:turn.school.example:443?transport=tcp",
                                 "turn:[2001:db8::1]:3478"])
def test_good_turn_urls(url: str) -> None:
    assert parse_turn_url(url) == url


@pytest.mark.parametrize("url", ["stun:host:3478", "turn:user:pw@host:3478", "turn:",
                                 "turn:host:99999", "turns:host:443?transport=udp",
                                 "turn:host:3478?transport=sctp", "http://host"])
def test_bad_turn_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_turn_url(url)


def test_settings_from_flags_and_environment() -> None:
    assert settings_from_args([], None, None, env_secret="from-env") is None
    got = settings_from_args(["turn:h:3478"], None, None, env_secret="from-env")
    assert got is not None and got.secret == "from-env" and got.ttl == DEFAULT_TTL_SECONDS
    assert settings_from_args(["turn:h"], "flag", 120, env_secret="env").secret == "flag"
    with pytest.raises(ValueError, match="needs --turn-secret"):
        settings_from_args(["turn:h"], None, None, env_secret=None)
    with pytest.raises(ValueError, match="at least one --turn-url"):
        settings_from_args([], "s", None, env_secret=None)
    with pytest.raises(ValueError, match="--turn-ttl"):
        settings_from_args(["turn:h"], "s", 5, env_secret=None)


@pytest.mark.parametrize("argv, message", [
    (["--turn-url", "turn:h:3478"], "needs --turn-secret"),
    (["--turn-secret", "topsecret"], "at least one --turn-url"),
    (["--turn-url", "turn:u:p@h", "--turn-secret", "topsecret"], "no user:password"),
])
def test_serve_refuses_bad_turn_flags_with_one_line(argv, message, tmp_path, capsys,
                                                    monkeypatch) -> None:
    monkeypatch.delenv("CLASSROOM_TURN_SECRET", raising=False)
    assert main(["serve", "--library", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "topsecret" not in err


# ---- a real coturn decides ---------------------------------------------------------------

@pytest.fixture(scope="module")
def turnserver():
    ok, why = coturn.available()
    if not ok:
        pytest.skip(why)
    with coturn.Coturn("127.0.0.1", SECRET, loopback_peers=True) as server:
        yield server


async def _allocate(server: coturn.Coturn, username: str, password: str,
                    transport: str) -> tuple[str, int]:
    turn, _ = await asyncio.wait_for(create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", server.port), username, password,
        transport=transport), 5)
    try:
        return turn.get_extra_info("sockname")
    finally:
        turn.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_coturn_accepts_our_credentials(turnserver, transport) -> None:
    user, password = credentials(SECRET, "classroom-ok", 300)
    host, port = asyncio.run(_allocate(turnserver, user, password, transport))
    assert host == "127.0.0.1" and port > 0, turnserver.tail()


@pytest.mark.parametrize("case", ["wrong secret", "expired"])
def test_coturn_refuses_a_wrong_secret_or_an_expired_credential(turnserver, case) -> None:
    if case == "wrong secret":
        user, password = credentials("not-the-secret", "classroom-bad", 300)
    else:
        user, password = credentials(SECRET, "classroom-old", 60, now=time.time() - 120)
    with pytest.raises(stun.TransactionFailed) as failed:
        asyncio.run(_allocate(turnserver, user, password, "tcp"))
    assert failed.value.response.attributes["ERROR-CODE"][0] == 401



def test_the_shipped_coturn_config_grants_our_credentials(tmp_path) -> None:
    """deploy/coturn/turnserver.conf as shipped (only ports, certificate, secret and paths
    put on test values): coturn takes every line and allocates with our credentials."""
    ok, why = coturn.available()
    if not ok:
        pytest.skip(why)
    from tests.helpers import free_port
    from tests.tls_certs import make_cert

    cert, key = make_cert(tmp_path, "turn", ["127.0.0.1"])
    port, tls_port, alt_port = free_port(), free_port(), free_port()
    values = {"listening-port": port, "tls-listening-port": tls_port,
              "alt-tls-listening-port": alt_port, "cert": cert, "pkey": key,
              "static-auth-secret": SECRET, "log-file": tmp_path / "turn.log",
              "pidfile": tmp_path / "turn.pid", "min-port": 61000, "max-port": 61100}
    shipped = (coturn.REPO / "deploy/coturn/turnserver.conf").read_text().splitlines()
    lines = [f"{k}={values[k]}" if (k := line.split("=", 1)[0]) in values else line
             for line in shipped]
    lines += ["listening-ip=127.0.0.1", "relay-ip=127.0.0.1", f"userdb={tmp_path / 'db'}",
              "verbose"]
    conf = tmp_path / "turnserver.conf"
    conf.write_text("\n".join(lines) + "\n")
    server = coturn.Coturn("127.0.0.1", SECRET)
    server.port, server.log = port, tmp_path / "turn.log"
    server.start_with(conf)
    try:
        user, password = credentials(SECRET, "classroom-prod", 300)
        host, _ = asyncio.run(_allocate(server, user, password, "tcp"))
        assert host == "127.0.0.1"
        log = server.tail(400)
        assert "CONFIG ERROR" not in log and "Bad configuration" not in log, log
    finally:
        server.stop()
