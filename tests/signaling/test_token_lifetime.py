"""Token lifetime: bounded at verification, an open session ends at its token's expiry
unless the page refreshed it (welcome/refreshed hand out a short-lived session token)."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest

from signaling.auth import MAX_TTL_SECONDS, mint_session_token, mint_token, verify_token
from signaling.errors import ClassroomError, ErrorCode
from tests.helpers import TEST_SECRET, eventually, start_server

LESSON = "life-1"
DAY = 86400


def forged(**claims) -> str:
    """A token signed with the server's secret but with claims the minting API refuses."""
    now = int(time.time())
    body = {"sub": "x", "role": "classroom", "lesson": LESSON, "iat": now, "exp": now + 60,
            **claims}
    return jwt.encode(body, TEST_SECRET, algorithm="HS256")


NOW = int(time.time())
TOO_LONG = {
    "31 days": {"exp": NOW + 31 * DAY},
    "100 years": {"exp": NOW + 100 * 365 * DAY},
    "1e20": {"exp": 1e20},
    "exp as string": {"exp": str(NOW + 60)},
    "iat as string": {"iat": str(NOW)},
    "exp true": {"exp": True},
    "exp infinite": {"exp": float("inf")},
    "old iat, far exp": {"iat": NOW - 31 * DAY, "exp": NOW + 3600},
    "iat in the future": {"iat": NOW + 3600, "exp": NOW + 7200},
    "auth_time forged old": {"auth_time": NOW - 40 * DAY},
}


@pytest.mark.parametrize("claims", TOO_LONG.values(), ids=TOO_LONG.keys())
def test_lifetime_is_bounded_at_verification(claims):
    with pytest.raises(ClassroomError) as err:
        verify_token(TEST_SECRET, forged(**claims))
    assert err.value.code == ErrorCode.INVALID_TOKEN


def test_thirty_days_and_floats_are_still_fine():
    now = int(time.time())  # not the module's NOW: collection may be minutes before the run
    verify_token(TEST_SECRET, forged(iat=now, exp=now + 30 * DAY))
    claims = verify_token(TEST_SECRET, forged(exp=now + 60.5, iat=now + 0.25))
    assert claims.exp == now + 60


def test_lone_surrogate_token_is_invalid_not_internal():
    with pytest.raises(ClassroomError) as err:
        verify_token(TEST_SECRET, "eyJ\ud800.x.y")
    assert err.value.code == ErrorCode.INVALID_TOKEN


def test_session_token_keeps_identity_and_its_chain_is_capped():
    link = mint_token(TEST_SECRET, role="classroom", lesson=LESSON, school="村小", name="一班",
                      cap_kbps=300, ttl=60)
    claims = verify_token(TEST_SECRET, link)
    token, exp = mint_session_token(TEST_SECRET, claims, 3600)
    again = verify_token(TEST_SECRET, token)
    assert (again.sub, again.role, again.lesson, again.school, again.name, again.cap_kbps) == (
        claims.sub, claims.role, claims.lesson, claims.school, claims.name, 300)
    assert again.exp == exp and again.auth_time == claims.iat
    # 20 s before the chain's end, a renewal lasts 20 s; after it, none is given
    late = NOW + MAX_TTL_SECONDS - 20
    old = verify_token(TEST_SECRET, mint_token(TEST_SECRET, role="classroom", lesson=LESSON,
                                               ttl=110, now=late - 100, auth_time=NOW),
                       now=late)
    assert mint_session_token(TEST_SECRET, old, 3600, now=late)[1] == late + 20
    assert mint_session_token(TEST_SECRET, old, 3600, now=late + 30) is None


@pytest.fixture
async def server():
    srv = await start_server(session_token_ttl=3.0)
    yield srv
    await srv.close()


async def api_status(server, token: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(
            server.base_url + "/api/lessons",
            headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, (await r.json())["error"]["code"] if r.status != 200 else ""


@pytest.mark.parametrize("name", ["31 days", "100 years", "1e20", "exp as string"])
async def test_server_refuses_overlong_tokens_at_hello_and_on_the_api(server, name):
    token = forged(**TOO_LONG[name])
    assert await api_status(server, token) == (401, "invalid_token")
    async with aiohttp.ClientSession() as s, s.ws_connect(server.base_url + "/ws") as ws:
        await ws.send_json({"type": "hello", "token": token, "lesson": LESSON})
        msg = await ws.receive_json(timeout=5)
        assert (msg["type"], msg["code"]) == ("error", "invalid_token")
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE,
                                                      aiohttp.WSMsgType.CLOSED)


class Socket:
    """A raw signaling socket: every message kept, replies awaited by type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next(self, kind: str, timeout: float = 8.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket closed waiting for {kind}: {msg.type}")
            data = json.loads(msg.data)
            if data["type"] == kind or (kind == "error" and data["type"] == "error"):
                return data
            if data["type"] == "error":
                raise AssertionError(f"error while waiting for {kind}: {data}")

    async def closed(self, timeout: float = 8.0) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code


async def open_socket(http, server, token: str) -> tuple[Socket, dict]:
    ws = await http.ws_connect(server.base_url + "/ws")
    sock = Socket(ws)
    await ws.send_json({"type": "hello", "token": token, "lesson": LESSON})
    return sock, await sock.next("welcome")


async def test_open_session_is_closed_when_its_token_expires(server):
    token = server.token("classroom", LESSON, ttl=2)
    async with aiohttp.ClientSession() as http:
        sock, welcome = await open_socket(http, server, token)
        # the session lasts as long as the token or the session token it was handed
        assert welcome["token_expires"] == max(verify_token(TEST_SECRET, token).exp,
                                               welcome["session_expires"])
        assert welcome["token_expires"] <= time.time() + 3
        err = await sock.next("error", timeout=6)
        assert err["code"] == "token_expired"
        assert await sock.closed() == 1008
        assert time.time() >= welcome["token_expires"] - 0.01


async def test_refresh_keeps_a_session_past_its_first_token(server):
    token = server.token("classroom", LESSON, ttl=2, school="村小")
    async with aiohttp.ClientSession() as http:
        sock, welcome = await open_socket(http, server, token)
        first_exp = welcome["token_expires"]
        latest = welcome["session_token"]
        # what a page left alone does: refresh with the latest session token at half-life
        # (session tokens live 3 s here), for three of their lifetimes
        end = first_exp + 6
        refreshes = 0
        while time.time() < end:
            await sock.ws.send_json({"type": "refresh", "token": latest})
            reply = await sock.next("refreshed")
            assert reply["token_expires"] == reply["session_expires"] > time.time()
            latest, refreshes = reply["session_token"], refreshes + 1
            await eventually(lambda r=reply: time.time() >= (
                r["server_time"] + r["session_expires"]) / 2, timeout=5)
        await sock.ws.send_json({"type": "ping", "ts": 1})
        assert (await sock.next("pong"))["ts"] == 1 and refreshes >= 4
        # the renewed token opens a new socket too (a page reconnecting after the link expired)
        again, welcome2 = await open_socket(http, server, latest)
        assert welcome2["role"] == "classroom" and welcome2["school"] == "村小"
        await again.ws.close()
        await sock.ws.close()


async def test_refresh_with_another_identity_is_forbidden_and_socket_stays(server):
    async with aiohttp.ClientSession() as http:
        sock, welcome = await open_socket(http, server, server.token("student", LESSON, sub="s1"))
        for other in (server.token("student", LESSON, sub="s2"),
                      server.token("teacher", LESSON, sub="s1"),
                      server.token("student", "other-lesson", sub="s1")):
            await sock.ws.send_json({"type": "refresh", "token": other})
            err = await sock.next("error")
            assert (err["code"], err["ref"]) == ("forbidden", "refresh")
        await sock.ws.send_json({"type": "ping"})
        await sock.next("pong")
        # a forged or expired token at refresh ends the session like at hello
        await sock.ws.send_json({"type": "refresh", "token": forged(exp=NOW + 31 * DAY)})
        assert (await sock.next("error"))["code"] == "invalid_token"
        assert await sock.closed() == 1008


async def test_refresh_never_shortens_the_session(server):
    long_token = server.token("teacher", LESSON, ttl=3600, sub="t1")
    async with aiohttp.ClientSession() as http:
        sock, welcome = await open_socket(http, server, long_token)
        await sock.ws.send_json({"type": "refresh", "token": server.token("teacher", LESSON,
                                                                          ttl=1, sub="t1")})
        reply = await sock.next("refreshed")
        assert reply["token_expires"] == welcome["token_expires"]
        await sock.ws.close()


async def test_refreshed_carries_fresh_turn_credentials():
    """A session open longer than its TURN credentials' TTL must not reconnect its media
    with a username coturn refuses as expired: refreshed hands out new ones."""
    from signaling.turn import TurnSettings

    turn_secret = "turn-shared-secret-0123456789"
    server = await start_server(turn=TurnSettings(
        urls=("turn:turn.school.example:3478?transport=tcp",), secret=turn_secret, ttl=3600))
    try:
        async with aiohttp.ClientSession() as http:
            sock, welcome = await open_socket(http, server, server.token("classroom", LESSON))
            first = welcome["ice_servers"][-1]["username"]
            first_expiry = int(first.split(":")[0])
            await eventually(lambda: int(time.time()) + 3600 > first_expiry, timeout=5)
            await sock.ws.send_json({"type": "refresh", "token": welcome["session_token"]})
            reply = await sock.next("refreshed")
            fresh = reply["ice_servers"][-1]
            assert int(fresh["username"].split(":")[0]) > first_expiry
            assert fresh["username"].endswith(":" + welcome["peer_id"])
            assert fresh["credential"] != welcome["ice_servers"][-1]["credential"]
            assert turn_secret not in json.dumps(reply)
            await sock.ws.close()
    finally:
        await server.close()
