"""The pages' HTTP routes in-process (no browser): pages, assets, and what is refused."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from classroom_web.routes import STATIC_DIR, add_routes, resolve_static


@pytest.fixture
async def client():
    app = web.Application()
    add_routes(app)
    async with TestClient(TestServer(app)) as c:
        yield c


def raw(path: str) -> URL:
    """A path sent as written (no client-side normalisation of ``..`` or escapes)."""
    return URL(path, encoded=True)


@pytest.mark.parametrize("page", ["teach", "class"])
async def test_pages_are_served_with_language_and_csp(client, page):
    resp = await client.get(f"/{page}/math-1")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    body = await resp.text()
    assert '<html lang="zh-CN">' in body
    assert "{{" not in body
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"

    resp = await client.get(f"/{page}/math-1?lang=en")
    assert '<html lang="en">' in await resp.text()


async def test_pages_reference_only_local_assets(client):
    for page in ("teach", "class"):
        body = await (await client.get(f"/{page}/x")).text()
        refs = re.findall(r'(?:src|href)="([^"]*)"', body)
        assert refs and all(ref.startswith("/static/") for ref in refs), refs
        assert "http:" not in body and "https:" not in body


@pytest.mark.parametrize(
    "path", ["/class/a%2Fb", "/class/%3Cscript%3E", "/teach/" + "x" * 65, "/class/a%20b"]
)
async def test_bad_lesson_ids_are_not_pages(client, path):
    resp = await client.get(raw(path))
    assert resp.status == 404


async def test_static_assets(client):
    resp = await client.get("/static/protocol.js")
    assert resp.status == 200
    assert resp.content_type == "text/javascript"  # ES modules run only as JavaScript
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for name, kind in [("tv.css", "text/css"), ("teach.css", "text/css")]:
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200 and resp.content_type == kind
    for script in sorted(STATIC_DIR.glob("*.js")):  # every module the pages import
        resp = await client.get(f"/static/{script.name}")
        assert resp.status == 200 and resp.content_type == "text/javascript", script.name


async def test_versioned_assets_are_cached_long(client):
    body = await (await client.get("/class/x")).text()
    version = body.split("/static/class.js?v=")[1].split('"')[0]
    resp = await client.get(f"/static/class.js?v={version}")
    assert "immutable" in resp.headers["Cache-Control"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static/../routes.py",
        "/static/%2e%2e/routes.py",
        "/static/..%2froutes.py",
        "/static/..%5croutes.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static//etc/passwd",
        "/static/.hidden",
        "/static/class.html",
        "/static/teach.html",
        "/static/nope.js",
        "/static/%00.js",
    ],
)
async def test_static_refuses_listing_traversal_and_templates(client, path):
    resp = await client.get(raw(path))
    assert resp.status == 404, path


def test_resolve_static_stays_inside_the_folder():
    assert resolve_static("protocol.js") == STATIC_DIR / "protocol.js"
    for bad in [
        "",
        "..",
        "../routes.py",
        "a/../../x",
        "/etc/passwd",
        "./protocol.js",
        "protocol.js/",
        "x\\..\\y",
        "\x00",
        "class.html",
    ]:
        assert resolve_static(bad) is None, bad
