"""JSON API under /api/: lessons, tokens and relay stats, bearer-token authenticated."""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import authz
from .auth import DEFAULT_TTL_SECONDS, Claims, mint_token
from .errors import ClassroomError, ErrorCode
from .protocol import decode_json
from .store import LessonRecord

if TYPE_CHECKING:
    from .app import Node

LESSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _claims(request: web.Request, node: Node) -> Claims:
    """The bearer token's claims (authorization itself is authz.guard's)."""
    return authz.bearer_claims(request, node.config.secret)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, else ``bad_json`` (every API route reads it so)."""
    try:
        body = await request.json(loads=decode_json)
    except (ValueError, UnicodeDecodeError):
        raise ClassroomError(ErrorCode.BAD_JSON, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ClassroomError(ErrorCode.BAD_JSON, "body must be a JSON object")
    return body


def str_field(body: dict[str, Any], name: str, default: str = "", max_len: int = 200) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or len(value) > max_len:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, f"'{name}' must be a string of <= {max_len}")
    return value


def add_routes(app: web.Application, node_key: web.AppKey) -> None:
    def node_of(request: web.Request) -> Node:
        return request.app[node_key]

    def guard(action: str):  # noqa: ANN202 - a decorator
        return authz.guard(action, lambda request: node_of(request).config.secret)

    @guard("GET /api/lessons")
    async def list_lessons(request: web.Request, claims: Claims) -> web.Response:
        node = node_of(request)
        lessons = await node.hub.store.list_lessons()
        visible = [lsn.to_json() for lsn in lessons if authz.in_lesson(claims, lsn.id)]
        return web.json_response({"lessons": visible})

    @guard("POST /api/lessons")
    async def create_lesson(request: web.Request, claims: Claims) -> web.Response:
        node = node_of(request)
        body = await json_body(request)
        default_id = claims.lesson if claims.lesson != "*" else uuid.uuid4().hex[:12]
        lesson_id = str_field(body, "id", default_id, 64)
        if not LESSON_ID.match(lesson_id):
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "lesson id: letters, digits, - and _")
        authz.check("POST /api/lessons", claims, lesson_id)
        record = LessonRecord(
            id=lesson_id,
            title=str_field(body, "title"),
            teacher=str_field(body, "teacher"),
            school=str_field(body, "school"),
        )
        if not await node.hub.store.create_lesson(record):
            raise ClassroomError(ErrorCode.LESSON_EXISTS, f"lesson {lesson_id!r} exists")
        return web.json_response(record.to_json(), status=201)

    @guard("GET /api/lessons/{lesson}")
    async def get_lesson(request: web.Request, claims: Claims) -> web.Response:
        node = node_of(request)
        lesson_id = request.match_info["lesson"]
        lesson = await node.hub.get_lesson(lesson_id)
        body = lesson.to_json()
        body["roster"] = await node.hub.roster(lesson_id)
        return web.json_response(body)

    @guard("POST /api/tokens")
    async def create_token(request: web.Request, claims: Claims) -> web.Response:
        node = node_of(request)
        body = await json_body(request)
        ttl = body.get("ttl")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool)):
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "'ttl' must be an integer")
        role = str_field(body, "role", max_len=16)
        lesson = str_field(body, "lesson", claims.lesson, max_len=64)
        school = str_field(body, "school", claims.school)
        authz.check("POST /api/tokens", claims, lesson)
        ttl = authz.check_mint(claims, lesson=lesson, school=school, ttl=ttl,
                               default_ttl=DEFAULT_TTL_SECONDS)
        try:
            token = mint_token(
                node.config.secret,
                role=role,
                lesson=lesson,
                school=school,
                name=str_field(body, "name"),
                ttl=ttl,
            )
        except ValueError as exc:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, str(exc)) from None
        return web.json_response({"token": token}, status=201)

    @guard("GET /api/relay")
    async def relay_stats(request: web.Request, claims: Claims) -> web.Response:
        node = node_of(request)
        return web.json_response(authz.relay_view(claims, node.relay.stats()),
                                 dumps=lambda o: json.dumps(o, default=str))

    @guard("POST /api/lessons/{lesson}/caps")
    async def set_cap(request: web.Request, claims: Claims) -> web.Response:
        """A school's bandwidth cap in a lesson, shared by its classrooms: ``{school, kbps}``
        (kbps 0 or null lifts it). Admin, or the lesson's teacher."""
        node = node_of(request)
        lesson_id = request.match_info["lesson"]
        body = await json_body(request)
        school = str_field(body, "school")
        kbps = body.get("kbps")
        if not school or not (kbps is None or (isinstance(kbps, int)
                                                and not isinstance(kbps, bool)
                                                and 0 <= kbps <= 10_000_000)):
            raise ClassroomError(ErrorCode.BAD_MESSAGE,
                                 "'school' (non-empty) and 'kbps' (integer >= 0 or null)")
        node.relay.set_cap(lesson_id, school, kbps * 1000 if kbps else None)
        return web.json_response({"lesson": lesson_id, "school": school, "kbps": kbps or None})

    app.router.add_get("/api/lessons", list_lessons)
    app.router.add_post("/api/lessons", create_lesson)
    app.router.add_get("/api/lessons/{lesson}", get_lesson)
    app.router.add_post("/api/tokens", create_token)
    app.router.add_get("/api/relay", relay_stats)
    app.router.add_post("/api/lessons/{lesson}/caps", set_cap)
