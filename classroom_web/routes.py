"""HTTP routes of the web pages: teacher console, classroom TV view and their assets.

``add_routes(app)`` adds:

* ``GET /teach/{lesson}`` teacher console (``static/teach.html``)
* ``GET /class/{lesson}`` classroom view, TV mode (``static/class.html``)
* ``GET /static/{path}`` the pages' scripts (ES modules, ``text/javascript``; see
  docs/pages.md), styles and icon: regular files under ``static/`` only, no directory
  listing, no hidden files, no path traversal, no raw page templates.

The token travels in the URL fragment, so it never reaches these handlers or any log.
The pages are served with a strict Content-Security-Policy: scripts, styles and media come
from this origin only and the only connection a page may open is its own ``/ws`` (or the
``/ws`` of another live node of the district, where a placement ``redirect`` sends it:
``CONNECT_SOURCES``).
``?lang=en`` selects English (the page's ``<html lang>``); Chinese (zh-CN) is the default.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Lesson ids in page paths: letters (any script), digits, "_", "-", "." up to 64 characters.
LESSON_ID = re.compile(r"^[\w.\-]{1,64}$")
# What may appear in a Host header that is copied into the CSP connect-src.
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
# Another node's socket origin that may join the CSP connect-src (nothing else can).
_SOCKET_ORIGIN = re.compile(r"^wss?://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")
CONNECT_SOURCES: web.AppKey[Callable[[], list[str]]] = web.AppKey("classroom_connect_sources")
"""The other live nodes' socket origins (``wss://host:port``) a page may open its ``/ws``
on after a placement ``redirect`` (signaling/placement.py sets it; absent: none)."""

_PAGE_FILES = {"teach": "teach.html", "class": "class.html",
               "library": "library.html", "replay": "replay.html"}
_PAGE_FILES.update({"answer": "answer.html", "report": "report.html"})  # quiz pages
# a school's week (signaling/school): the classroom device, the teacher's day, students' code
_PAGE_FILES.update({"room": "room.html", "today": "today.html", "join": "join.html"})
_PAGE_FILES["admin"] = "admin.html"  # the admin console (directory, timetable, devices, stats)
# Recording ids in /replay/{recording} (the recording package checks them again).
RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
# Content types by suffix, not from the host's mime.types: the pages' scripts are ES modules,
# which browsers run only when served as JavaScript (and nosniff is on).
_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                  ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class _Pages:
    templates: dict[str, str]
    version: str


PAGES_KEY = web.AppKey("classroom_web_pages", _Pages)


def add_routes(app: web.Application) -> None:
    """Mount the teacher console, the classroom view and ``/static`` on ``app``."""
    app[PAGES_KEY] = _load_pages()
    app.router.add_get("/teach/{lesson}", teacher_page)
    app.router.add_get("/class/{lesson}", classroom_page)
    app.router.add_get("/static/{path:.+}", static_file)
    app.router.add_get("/library", library_page)
    app.router.add_get("/replay/{recording}", replay_page)
    # practice and tests (signaling/quiz): the student's phone page and the learning report
    app.router.add_get("/answer/{lesson}", answer_page)
    app.router.add_get("/report/{lesson}", report_page)
    # a school's week: /room (a classroom device), /teach (the teacher's day), /join (students)
    for path, name in (("/room", "room"), ("/teach", "today"), ("/join", "join")):
        app.router.add_get(path, _named_page(name))
    app.router.add_get("/admin", admin_page)


async def admin_page(request: web.Request) -> web.Response:
    """/admin: the admin console (token in the fragment; the API enforces its scope)."""
    return _render(request, "admin")


async def answer_page(request: web.Request) -> web.Response:
    """/answer/{lesson}: a student answers practice and tests on a phone."""
    return _page(request, "answer")


async def report_page(request: web.Request) -> web.Response:
    """/report/{lesson}: the printable learning report (学情报告)."""
    return _page(request, "report")


def _named_page(name: str):  # noqa: ANN202 - a handler factory
    async def page(request: web.Request) -> web.Response:
        return _render(request, name)

    page.__name__ = f"{name}_page"
    return page


def _load_pages() -> _Pages:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    templates = {
        name: (STATIC_DIR / filename).read_text(encoding="utf-8")
        for name, filename in _PAGE_FILES.items()
    }
    return _Pages(templates=templates, version=digest.hexdigest()[:12])


async def teacher_page(request: web.Request) -> web.Response:
    return _page(request, "teach")


async def classroom_page(request: web.Request) -> web.Response:
    return _page(request, "class")


async def library_page(request: web.Request) -> web.Response:
    """The library (recordings this page's token may see; token in the fragment)."""
    return _render(request, "library")


async def replay_page(request: web.Request) -> web.Response:
    """Replay of one recording from a signed link (``?exp=...&sig=...``)."""
    if not RECORDING_ID.match(request.match_info["recording"]):
        raise web.HTTPNotFound(text="no such recording")
    return _render(request, "replay")


def _render(request: web.Request, name: str) -> web.Response:
    pages = request.app[PAGES_KEY]
    lang = "en" if request.query.get("lang") == "en" else "zh-CN"
    body = pages.templates[name].replace("{{lang}}", lang).replace("{{version}}", pages.version)
    return web.Response(text=body, content_type="text/html", charset="utf-8",
                        headers=_page_headers(request.host, _other_sockets(request)))


def _page(request: web.Request, name: str) -> web.Response:
    if not LESSON_ID.match(request.match_info["lesson"]):
        raise web.HTTPNotFound(text="no such lesson page")
    pages = request.app[PAGES_KEY]
    lang = "en" if request.query.get("lang") == "en" else "zh-CN"
    body = pages.templates[name].replace("{{lang}}", lang).replace("{{version}}", pages.version)
    return web.Response(
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers=_page_headers(request.host, _other_sockets(request)),
    )


def _other_sockets(request: web.Request) -> list[str]:
    """The other nodes' socket origins, each checked again here (at most 64)."""
    sources = request.app.get(CONNECT_SOURCES)
    if sources is None:
        return []
    return [s for s in sources() if _SOCKET_ORIGIN.match(s)][:64]


def _page_headers(host: str, other_sockets: list[str] | None = None) -> dict[str, str]:
    connect = "'self'"
    if _HOST.match(host or ""):
        # Old browsers do not let 'self' cover ws:/wss:, so name the socket's origin too.
        connect += f" ws://{host} wss://{host}"
    for origin in other_sockets or ():
        connect += f" {origin}"
    csp = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self' blob: mediastream:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


def resolve_static(relative: str) -> Path | None:
    """The file under ``static/`` that ``relative`` names, or None when it must not be served."""
    if not relative or "\x00" in relative or "\\" in relative or relative.startswith("/"):
        return None
    parts = relative.split("/")
    if any(not part or part in (".", "..") or part.startswith(".") for part in parts):
        return None
    if relative.endswith(".html"):
        return None  # page templates are served by their routes, filled in
    root = STATIC_DIR
    try:
        candidate = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


async def static_file(request: web.Request) -> web.StreamResponse:
    path = resolve_static(request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound()
    versioned = request.query.get("v") == request.app[PAGES_KEY].version
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
    }
    kind = _CONTENT_TYPES.get(path.suffix)
    if kind:
        headers["Content-Type"] = kind
    return web.FileResponse(path, headers=headers)
