"""JSON API under /api/: lessons, tokens and relay stats, bearer-token authenticated."""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .auth import DEFAULT_TTL_SECONDS, Claims, Role, mint_token, verify_token
from .errors import ClassroomError, ErrorCode
from .store import LessonRecord
from .protocol import decode_json

if TYPE_CHECKING:
    from .app import Node

LESSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _claims(request: web.Request, node: Node) -> Claims:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ClassroomError(ErrorCode.NOT_AUTHENTICATED, "Authorization: Bearer <token> needed")
    return verify_token(node.config.secret, token.strip())


def _require(claims: Claims, *roles: Role) -> None:
    if claims.role not in roles:
        raise ClassroomError(ErrorCode.FORBIDDEN, f"role {claims.role.value} may not do this")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=decode_json)
    except (ValueError, UnicodeDecodeError):
        raise ClassroomError(ErrorCode.BAD_JSON, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ClassroomError(ErrorCode.BAD_JSON, "body must be a JSON object")
    return body


def _str_field(body: dict[str, Any], name: str, default: str = "", max_len: int = 200) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or len(value) > max_len:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, f"'{name}' must be a string of <= {max_len}")
    return value


def add_routes(app: web.Application, node_key: web.AppKey) -> None:
    def node_of(request: web.Request) -> Node:
        return request.app[node_key]

    async def list_lessons(request: web.Request) -> web.Response:
        node = node_of(request)
        claims = _claims(request, node)
        lessons = await node.hub.store.list_lessons()
        visible = [lsn.to_json() for lsn in lessons if claims.may_access(lsn.id)]
        return web.json_response({"lessons": visible})

    async def create_lesson(request: web.Request) -> web.Response:
        node = node_of(request)
        claims = _claims(request, node)
        _require(claims, Role.ADMIN)
        body = await _json_body(request)
        lesson_id = _str_field(body, "id", uuid.uuid4().hex[:12], 64)
        if not LESSON_ID.match(lesson_id):
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "lesson id: letters, digits, - and _")
        record = LessonRecord(
            id=lesson_id,
            title=_str_field(body, "title"),
            teacher=_str_field(body, "teacher"),
            school=_str_field(body, "school"),
        )
        if not await node.hub.store.create_lesson(record):
            raise ClassroomError(ErrorCode.LESSON_EXISTS, f"lesson {lesson_id!r} exists")
        return web.json_response(record.to_json(), status=201)

    async def get_lesson(request: web.Request) -> web.Response:
        node = node_of(request)
        claims = _claims(request, node)
        lesson_id = request.match_info["lesson"]
        if not claims.may_access(lesson_id):
            raise ClassroomError(ErrorCode.WRONG_LESSON, "token is for another lesson")
        lesson = await node.hub.get_lesson(lesson_id)
        body = lesson.to_json()
        body["roster"] = await node.hub.roster(lesson_id)
        return web.json_response(body)

    async def create_token(request: web.Request) -> web.Response:
        node = node_of(request)
        claims = _claims(request, node)
        _require(claims, Role.ADMIN)
        body = await _json_body(request)
        ttl = body.get("ttl", DEFAULT_TTL_SECONDS)
        if not isinstance(ttl, int) or isinstance(ttl, bool):
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "'ttl' must be an integer")
        try:
            token = mint_token(
                node.config.secret,
                role=_str_field(body, "role", max_len=16),
                lesson=_str_field(body, "lesson", max_len=64),
                school=_str_field(body, "school"),
                name=_str_field(body, "name"),
                ttl=ttl,
            )
        except ValueError as exc:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, str(exc)) from None
        return web.json_response({"token": token}, status=201)

    async def relay_stats(request: web.Request) -> web.Response:
        node = node_of(request)
        claims = _claims(request, node)
        _require(claims, Role.OPS, Role.ADMIN)
        return web.json_response(node.relay.stats(), dumps=lambda o: json.dumps(o, default=str))

    async def set_cap(request: web.Request) -> web.Response:
        """A school's bandwidth cap in a lesson, shared by its classrooms: ``{school, kbps}``
        (kbps 0 or null lifts it). Admin, or the lesson's teacher."""
        node = node_of(request)
        claims = _claims(request, node)
        _require(claims, Role.ADMIN, Role.TEACHER)
        lesson_id = request.match_info["lesson"]
        if not claims.may_access(lesson_id):
            raise ClassroomError(ErrorCode.WRONG_LESSON, "token is for another lesson")
        body = await _json_body(request)
        school = _str_field(body, "school")
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
