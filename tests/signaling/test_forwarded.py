"""X-Forwarded-* believed only from loopback and configured proxies (signaling/forwarded.py)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from signaling.forwarded import ForwardedHeaders, parse_networks

HEADERS = CIMultiDict({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "school.example",
                       "X-Forwarded-For": "203.0.113.9, 10.1.2.3"})


def test_untrusted_peer_headers_are_ignored() -> None:
    assert ForwardedHeaders().changes("192.0.2.50", HEADERS) == {}
    assert ForwardedHeaders().changes(None, HEADERS) == {}


def test_loopback_proxy_is_believed_rightmost_untrusted_hop_is_the_client() -> None:
    got = ForwardedHeaders().changes("127.0.0.1", HEADERS)
    assert got == {"scheme": "https", "host": "school.example", "remote": "10.1.2.3"}
    # 10.1.2.3 is a trusted proxy too: the client is the hop before it
    chained = ForwardedHeaders(parse_networks(["10.0.0.0/8"]))
    assert chained.changes("10.9.9.9", HEADERS)["remote"] == "203.0.113.9"
    assert chained.changes("::ffff:10.9.9.9", HEADERS)["remote"] == "203.0.113.9"


def test_garbage_is_not_believed() -> None:
    bad = CIMultiDict({"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "evil\"; x",
                       "X-Forwarded-For": "203.0.113.9, nonsense"})
    assert ForwardedHeaders().changes("127.0.0.1", bad) == {}
    with pytest.raises(ValueError, match="--trusted-proxy"):
        parse_networks(["10.0.0.0/99"])


async def test_middleware_rewrites_the_request() -> None:
    async def show(request: web.Request) -> web.Response:
        return web.json_response({"scheme": request.scheme, "host": request.host,
                                  "remote": request.remote})

    app = web.Application(middlewares=[ForwardedHeaders().middleware()])
    app.router.add_get("/", show)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/", headers=dict(HEADERS))
        assert await resp.json() == {"scheme": "https", "host": "school.example",
                                     "remote": "10.1.2.3"}
        resp = await client.get("/")
        assert (await resp.json())["remote"] == "127.0.0.1"
