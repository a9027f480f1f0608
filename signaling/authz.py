"""Who may do what: one reviewed table for every HTTP route and WebSocket message.

A row names an action (``"GET /api/lessons/{lesson}"`` or ``"ws offer:publish"``), the
roles that may do it, its lesson scope and its school scope. HTTP handlers are wrapped in
:func:`guard` (token verified, role and path lesson checked before the handler runs); the
socket dispatch calls :func:`check_message`; the rules that need the object itself
(recordings, minted tokens, lists) are the functions below, so every decision lives here.
Deny by default: an action with no row is refused. ``python -m signaling.authz`` prints
the table as Markdown; ``--write`` puts it into docs/security.md (between its
``authz-table`` markers; a test keeps the two equal).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from aiohttp import web

from .auth import ANY_LESSON, Claims, Role, verify_token
from .errors import ClassroomError, ErrorCode

ALL = frozenset(Role)
NOBODY: frozenset[Role] = frozenset()
T, C, S, OP, A = Role.TEACHER, Role.CLASSROOM, Role.STUDENT, Role.OPS, Role.ADMIN
SA = Role.SCHOOL_ADMIN
KEY_HOLDERS = frozenset({T, A, OP})
"""Roles that see a lesson's answer key before the reveal (they may read the set anyway)."""


class Lesson(str, Enum):
    """Which lesson the token's ``lesson`` claim must match (``*`` admin/ops: any)."""

    NONE = "none"  # names no lesson: the answer is filtered to the token's scope
    PATH = "path"  # the {lesson} of the path
    BODY = "body"  # the lesson the body names (a new lesson's id, a minted token's lesson)
    SOCKET = "socket"  # the socket's lesson, fixed at hello: the token's own, never '*'
    RECORD = "record"  # the recording's lesson (see may_see_recording / may_edit_recording)
    SIGNED = "signed"  # no token: an HMAC-signed, expiring link
    PUBLIC = "public"  # no token
    DEVICE = "device"  # no token: a classroom device's credential (school/devices.py)
    NODE = "node"  # no token: another node of the district (HMAC, signaling/cascade.py)


class School(str, Enum):
    """What the token's ``school`` claim must match."""

    ANY = "any"
    RECORD = "record"  # a school that took part in the recorded lesson (or published)
    MINT = "mint"  # minted tokens carry the minter's school unless the minter is '*'
    SCOPE = "scope"  # objects of the token's schools only (school_scope; others: 404)


@dataclass(frozen=True)
class Rule:
    action: str
    roles: frozenset[Role]
    lesson: Lesson
    school: School = School.ANY
    note: str = ""


def _rules(*rows: Rule) -> dict[str, Rule]:
    table: dict[str, Rule] = {}
    for row in rows:
        if row.action in table:
            raise ValueError(f"authorization row {row.action!r} twice")
        table[row.action] = row
    return table


_REC = "published: any token; '*' admin/ops; teacher/admin/ops of its lesson (school-less or " \
       "of a taking-part school); any token of a taking-part school"
_EDIT = "'*' admin; admin or teacher of its lesson whose school is the recording's (or none); " \
        "others who may see it: 403, the rest 404"

_SCOPED = "of the token's schools; others 404"
_SCOPED_EDIT = "'*' admin, or the school_admin of its school; a lesson admin 403; others 404"

_TT_EDIT = "'*' admin, or the school_admin of the main classroom's school"

TABLE: dict[str, Rule] = _rules(
    # HTTP: lessons, tokens, relay ----------------------------------------------------------
    Rule("GET /api/lessons", ALL, Lesson.NONE, note="only the token's lesson ('*': all)"),
    Rule("POST /api/lessons", frozenset({A}), Lesson.BODY,
         note="a lesson admin creates only its own lesson id"),
    Rule("GET /api/lessons/{lesson}", ALL, Lesson.PATH),
    Rule("POST /api/tokens", frozenset({A}), Lesson.BODY, School.MINT,
         note="never wider than the minter: its lesson ('*' only from a '*' admin), its "
              "school, expiring no later than its own token"),
    Rule("GET /api/relay", frozenset({OP, A}), Lesson.NONE,
         note="'*': every lesson and node totals; else its lesson's stats only"),
    Rule("GET /api/nodes", frozenset({OP, A}), Lesson.NONE,
         note="node records (addresses, load); origins of the lessons the token sees"),
    Rule("GET /api/cascade", frozenset({OP, A}), Lesson.NONE,
         note="this node's pulls (origin, lines, hop latency) and edges served, of the "
         "lessons the token sees"),
    Rule("POST /api/lessons/{lesson}/caps", frozenset({A, T}), Lesson.PATH),
    # HTTP: practice and tests --------------------------------------------------------------
    Rule("GET /api/lessons/{lesson}/quiz/set", KEY_HOLDERS, Lesson.PATH,
         note="holds the answer key"),
    Rule("PUT /api/lessons/{lesson}/quiz/set", frozenset({T, A}), Lesson.PATH),
    Rule("POST /api/lessons/{lesson}/quiz/set", frozenset({T, A}), Lesson.PATH),
    Rule("GET /api/lessons/{lesson}/quiz/report", ALL, Lesson.PATH,
         note="teacher/admin/ops: every answer and the key; classroom/student: their own "
              "answers, key and judgement of revealed rounds only"),
    Rule("GET /api/lessons/{lesson}/quiz/report.csv", ALL, Lesson.PATH, note="as the JSON"),
    # HTTP: library -------------------------------------------------------------------------
    Rule("GET /api/recordings", ALL, Lesson.NONE, School.RECORD,
         note="only recordings the token may see"),
    Rule("GET /api/recordings/{recording}", ALL, Lesson.RECORD, School.RECORD, note=_REC),
    Rule("POST /api/recordings/{recording}/link", ALL, Lesson.RECORD, School.RECORD,
         note=_REC),
    Rule("PATCH /api/recordings/{recording}", frozenset({A, T}), Lesson.RECORD, School.RECORD,
         note=_EDIT),
    Rule("DELETE /api/recordings/{recording}", frozenset({A, T}), Lesson.RECORD,
         School.RECORD, note=_EDIT),
    Rule("GET /api/replay/{recording}", NOBODY, Lesson.SIGNED),
    Rule("GET /media/{recording}/{exp}/{sig}/{file}", NOBODY, Lesson.SIGNED),
    # HTTP: no token (pages carry theirs in the fragment, which browsers do not send) -------
    *(Rule(f"GET {path}", NOBODY, Lesson.PUBLIC, note=note) for path, note in (
        ("/healthz", ""), ("/readyz", ""),
        ("/metrics", "counts only: no lesson, school or person labels; restrict at the proxy"),
        ("/ws", "the socket authenticates with its first message, hello"),
        ("/vendor/hls.min.js", ""), ("/static/{path}", ""), ("/teach/{lesson}", ""),
        ("/class/{lesson}", ""), ("/answer/{lesson}", ""), ("/report/{lesson}", ""),
        ("/library", ""), ("/replay/{recording}", ""), ("/admin", ""))),
    # WebSocket: core -----------------------------------------------------------------------
    Rule("ws hello", ALL, Lesson.SOCKET,
         note="token's lesson = the page's; '*' tokens refused (wrong_lesson)"),
    Rule("ws ping", ALL, Lesson.SOCKET),
    Rule("ws refresh", ALL, Lesson.SOCKET, note="a token of the same sub, role and lesson"),
    Rule("ws offer:publish", frozenset({T}), Lesson.SOCKET),
    Rule("ws offer:subscribe", frozenset({T, C}), Lesson.SOCKET),
    Rule("ws offer:uplink", frozenset({C}), Lesson.SOCKET),
    Rule("ws offer:grid", frozenset({T}), Lesson.SOCKET),
    Rule("ws ice:publish", frozenset({T}), Lesson.SOCKET),
    Rule("ws ice:subscribe", frozenset({T, C}), Lesson.SOCKET),
    Rule("ws ice:uplink", frozenset({C}), Lesson.SOCKET),
    Rule("ws ice:grid", frozenset({T}), Lesson.SOCKET),
    Rule("ws start-lesson", frozenset({T}), Lesson.SOCKET),
    Rule("ws end-lesson", frozenset({T}), Lesson.SOCKET),
    Rule("ws low-bandwidth", frozenset({C}), Lesson.SOCKET),
    # WebSocket: two-way lesson -------------------------------------------------------------
    Rule("ws raise-hand", frozenset({C}), Lesson.SOCKET),
    Rule("ws lower-hand", frozenset({C}), Lesson.SOCKET),
    Rule("ws uplink-state", frozenset({C}), Lesson.SOCKET),
    Rule("ws grid-view", frozenset({T}), Lesson.SOCKET),
    Rule("ws call-on-stage", frozenset({T}), Lesson.SOCKET),
    Rule("ws leave-stage", frozenset({T, C}), Lesson.SOCKET,
         note="a classroom only when it is the one on stage"),
    Rule("ws mute-classroom", frozenset({T}), Lesson.SOCKET),
    Rule("ws remove-classroom", frozenset({T}), Lesson.SOCKET),
    Rule("ws share", frozenset({T}), Lesson.SOCKET),
    # WebSocket: practice and tests ---------------------------------------------------------
    Rule("ws push-question", frozenset({T}), Lesson.SOCKET),
    Rule("ws open-test", frozenset({T}), Lesson.SOCKET),
    Rule("ws close-round", frozenset({T}), Lesson.SOCKET),
    Rule("ws reveal", frozenset({T}), Lesson.SOCKET),
    Rule("ws quiz-answer", frozenset({C, S}), Lesson.SOCKET,
         note="as itself only (not_your_classroom)"),
    Rule("ws quiz-state", frozenset({T, C, S}), Lesson.SOCKET,
         note="teacher: the tally; others: their own answers"),
    # WebSocket: recording ------------------------------------------------------------------
    Rule("ws recording-pause", frozenset({T}), Lesson.SOCKET),
    Rule("ws recording-resume", frozenset({T}), Lesson.SOCKET),
    Rule("ws recording-consent", frozenset({C, T}), Lesson.SOCKET),
    # WebSocket and HTTP: quality the pages saw (signaling/quality.py) --------------------
    Rule("ws quality", frozenset({T, C}), Lesson.SOCKET,
         note="a page's getStats() report; one per 5 s per socket"),
    Rule("GET /api/lessons/{lesson}/quality", frozenset({T, A, OP}), Lesson.PATH,
         note="per-classroom quality summaries of the lesson"),
    # WebSocket and HTTP: glass-to-glass latency (signaling/glass.py) ---------------------
    Rule("ws glass", frozenset({T, C}), Lesson.SOCKET,
         note="clock offset; a classroom's playout samples"),
    Rule("GET /api/lessons/{lesson}/glass", frozenset({T, A, OP}), Lesson.PATH,
         note="each classroom's glass-to-glass p50/p95"),
    # HTTP: the school directory (signaling/school/directory.py) --------------------------
    *(Rule(action, roles, Lesson.NONE, School.SCOPE, note=note) for action, roles, note in (
        ("GET /api/schools", frozenset({A, SA}), "the token's schools ('*' admin: all)"),
        ("POST /api/schools", frozenset({A}), "'*' admin only"),
        ("GET /api/schools/{school}", frozenset({A, SA}), _SCOPED),
        ("PUT /api/schools/{school}", frozenset({A, SA}), _SCOPED_EDIT),
        ("DELETE /api/schools/{school}", frozenset({A}),
         "'*' admin; 409 while it has classrooms, teachers or devices"),
        ("GET /api/clusters", frozenset({A, SA}), "clusters holding one of the token's schools"),
        ("POST /api/clusters", frozenset({A}), "'*' admin only"),
        ("GET /api/clusters/{cluster}", frozenset({A, SA}), _SCOPED),
        ("PUT /api/clusters/{cluster}", frozenset({A}), "'*' admin only"),
        ("DELETE /api/clusters/{cluster}", frozenset({A}), "'*' admin only"),
        ("GET /api/schools/{school}/classrooms", frozenset({A, SA}), _SCOPED),
        ("POST /api/schools/{school}/classrooms", frozenset({A, SA}), _SCOPED_EDIT),
        ("PUT /api/classrooms/{classroom}", frozenset({A, SA}), _SCOPED_EDIT),
        ("DELETE /api/classrooms/{classroom}", frozenset({A, SA}), _SCOPED_EDIT),
        ("GET /api/schools/{school}/teachers", frozenset({A, SA}), _SCOPED),
        ("POST /api/schools/{school}/teachers", frozenset({A, SA}), _SCOPED_EDIT),
        ("PUT /api/teachers/{teacher}", frozenset({A, SA}), _SCOPED_EDIT),
        ("DELETE /api/teachers/{teacher}", frozenset({A, SA}), _SCOPED_EDIT),
    )),
    # HTTP: timetable and usage statistics (signaling/school/timetable_api.py, stats_api.py)
    *(Rule(action, roles, Lesson.NONE, School.SCOPE, note=note) for action, roles, note in (
        ("GET /api/terms", frozenset({A, SA, OP}), "district-wide"),
        ("POST /api/terms", frozenset({A}), "'*' admin only"),
        ("PUT /api/terms/{term}", frozenset({A}), "'*' admin only"),
        ("DELETE /api/terms/{term}", frozenset({A}), "'*' admin; 409 while it has slots"),
        ("GET /api/timetable", frozenset({A, SA, OP}),
         "slots touching the token's schools (main or receiving classroom)"),
        ("POST /api/timetable/slots", frozenset({A, SA}), _TT_EDIT),
        ("PUT /api/timetable/slots/{slot}", frozenset({A, SA}), _TT_EDIT),
        ("DELETE /api/timetable/slots/{slot}", frozenset({A, SA}), _TT_EDIT),
        ("POST /api/timetable/import", frozenset({A, SA}), _TT_EDIT + "; every row"),
        ("GET /api/timetable/export.csv", frozenset({A, SA, OP}), "as GET /api/timetable"),
        ("GET /api/stats", frozenset({A, SA, OP}),
         "aggregates of the token's schools only; no per-student rows"),
        ("GET /api/stats.csv", frozenset({A, SA, OP}), "as GET /api/stats"),
    )),
    # HTTP: classroom devices, the teacher's day, join codes (signaling/school/devices_api.py)
    Rule("POST /api/pairing", NOBODY, Lesson.PUBLIC,
         note="a new /room page asks for a pairing code; 20 per 10 min per address"),
    Rule("GET /api/pairing/{code}/status", NOBODY, Lesson.PUBLIC,
         note="X-Pairing-Token header (the page's poll token); wrong: 404, counted"),
    Rule("POST /api/devices", frozenset({A, SA}), Lesson.NONE, School.SCOPE,
         note="pair: a classroom of the token's schools; wrong codes 10 per 10 min"),
    Rule("GET /api/devices", frozenset({A, SA}), Lesson.NONE, School.SCOPE,
         note="the devices of the token's schools"),
    Rule("GET /api/devices/{device}", frozenset({A, SA}), Lesson.NONE, School.SCOPE,
         note="of the token's schools; others 404"),
    Rule("DELETE /api/devices/{device}", frozenset({A, SA}), Lesson.NONE, School.SCOPE,
         note="revoke: of the token's schools (others 404); its sockets close"),
    Rule("GET /api/room/next", NOBODY, Lesson.DEVICE,
         note="Authorization: Device <credential>; mints a classroom token of its lesson"),
    Rule("POST /api/teacher/links", frozenset({A, SA}), Lesson.NONE, School.SCOPE,
         note="a teacher's day token (lesson '@today') of a teacher of the token's schools"),
    Rule("GET /api/teacher/today", frozenset({T}), Lesson.NONE,
         note="a day token only: today's lessons, each with a token for that lesson only"),
    Rule("POST /api/lessons/{lesson}/join-code", frozenset({T, A}), Lesson.PATH,
         note="students' code of one classroom, until the lesson's end + overrun"),
    Rule("GET /cascade/link/{lesson}", NOBODY, Lesson.NODE,
         note="an edge node pulls the lesson: X-Cascade-Auth, HMAC of the shared secret, "
         "60 s, a live node's id; else 403 before any media"),
    Rule("POST /api/join", NOBODY, Lesson.PUBLIC,
         note="a join code -> a student token of its lesson and school; 30 wrong/10 min"),
    *(Rule(f"GET {path}", NOBODY, Lesson.PUBLIC) for path in ("/room", "/teach", "/join")),
)


# scope ---------------------------------------------------------------------------------------
def in_lesson(claims: Claims, lesson_id: str) -> bool:
    """The token's lesson is this one, or it is a '*' admin/ops token."""
    return claims.lesson == lesson_id or (claims.role.all_lessons and claims.lesson == ANY_LESSON)


def school_scope(claims: Claims) -> set[str] | None:
    """The schools whose directory, timetable, devices and statistics this token sees:
    None for every school ('*' admin and ops), its ``school`` claim for school_admin and
    the lesson roles (a role without a school claim: none). Whether it may *change* them
    is :func:`may_administer`."""
    if claims.role.all_lessons and claims.lesson == ANY_LESSON:
        return None
    return {claims.school} if claims.school else set()


def in_scope(claims: Claims, school_id: str) -> bool:
    scope = school_scope(claims)
    return scope is None or school_id in scope


def may_administer(claims: Claims, school_id: str | None = None) -> bool:
    """The '*' admin administers every school (and the district: ``school_id`` None); a
    school_admin its own school only; nobody else."""
    if claims.role == A and claims.lesson == ANY_LESSON:
        return True
    return claims.role == SA and school_id is not None and claims.school == school_id


def _allow(rule: Rule | None, role: Role) -> Rule:
    if rule is None or role not in rule.roles:
        what = rule.action if rule is not None else "this"
        raise ClassroomError(ErrorCode.FORBIDDEN, f"role {role.value} may not do {what}")
    return rule


def check(action: str, claims: Claims, lesson_id: str | None = None) -> Rule:
    """Refuse (forbidden / wrong_lesson) unless the table lets this token do ``action``."""
    rule = TABLE.get(action)
    if lesson_id is not None and rule is not None and rule.lesson in (Lesson.PATH, Lesson.BODY):
        if not in_lesson(claims, lesson_id):
            raise ClassroomError(ErrorCode.WRONG_LESSON, "token is for another lesson")
    return _allow(rule, claims.role)


def message_action(msg_type: str, purpose: Any = None) -> str:
    """The table key of a WebSocket message (media messages by purpose)."""
    return f"ws {msg_type}:{purpose}" if isinstance(purpose, str) else f"ws {msg_type}"


def check_message(role: Role, msg_type: str, purpose: Any = None) -> None:
    """Refuse (forbidden) a socket message the sender's role may not send."""
    _allow(TABLE.get(message_action(msg_type, purpose)), role)


def message_roles(msg_type: str) -> frozenset[Role]:
    """Every role some row lets send ``msg_type`` (any purpose): MessageSpec.roles must match."""
    prefix = f"ws {msg_type}"
    return frozenset().union(*(r.roles for k, r in TABLE.items()
                               if k == prefix or k.startswith(prefix + ":")))


# HTTP guard ----------------------------------------------------------------------------------
Handler = Callable[[web.Request, Claims], Awaitable[web.StreamResponse]]


def bearer_claims(request: web.Request, secret: str) -> Claims:
    """The verified claims of ``Authorization: Bearer <token>`` (not_authenticated if none)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ClassroomError(ErrorCode.NOT_AUTHENTICATED, "Authorization: Bearer <token> needed")
    return verify_token(secret, token.strip())


def guard(action: str, secret_of: Callable[[web.Request], str]
          ) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a handler ``(request, claims)``: token verified, the row's role and path lesson
    checked before it runs. The wrapper carries ``authz_action`` so a test can match every
    registered route against the table."""
    if action not in TABLE:
        raise ValueError(f"no authorization row for {action!r}")
    rule = TABLE[action]

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            claims = bearer_claims(request, secret_of(request))
            lesson = request.match_info.get("lesson") if rule.lesson == Lesson.PATH else None
            check(action, claims, lesson)
            return await handler(request, claims)

        guarded.authz_action = action  # type: ignore[attr-defined]
        return guarded

    return wrap


def public(action: str) -> Callable[[Any], Any]:
    """Mark a handler as one of the table's no-token rows (signed link or public)."""
    if TABLE.get(action) is None or TABLE[action].roles:
        raise ValueError(f"{action!r} is not a no-token row")

    def mark(handler: Any) -> Any:
        handler.authz_action = action
        return handler

    return mark


# object-level rules --------------------------------------------------------------------------
def _school_fits(claims: Claims, schools: set[str]) -> bool:
    """A lesson-scoped token without a school claim, or one of the given schools."""
    return not claims.school or not schools or claims.school in schools


def may_see_recording(claims: Claims, record: dict[str, Any]) -> bool:
    if record.get("published") or (claims.role.all_lessons and claims.lesson == ANY_LESSON):
        return True  # a school_admin's '*' means no lesson, not every lesson
    schools = {*(record.get("schools") or []), *([record["school"]] if record.get("school")
                                                 else [])}
    if (claims.role in KEY_HOLDERS and claims.lesson == record.get("lesson")
            and _school_fits(claims, schools)):
        return True
    return bool(claims.school) and claims.school in schools


def may_edit_recording(claims: Claims, record: dict[str, Any]) -> bool:
    if claims.role == A and claims.lesson == ANY_LESSON:
        return True
    own = {record["school"]} if record.get("school") else set()
    return (claims.role in (A, T) and claims.lesson == record.get("lesson")
            and _school_fits(claims, own))


def check_recording(action: str, claims: Claims, record: dict[str, Any] | None) -> dict[str, Any]:
    """The record, if this token may do ``action`` on it: 404 when it may not even see it,
    403 when it sees it but may not change it."""
    rule = TABLE[action]
    if record is None or not may_see_recording(claims, record):
        raise ClassroomError(ErrorCode.NOT_FOUND, "no such recording")
    if rule.roles != ALL and not (claims.role in rule.roles and may_edit_recording(claims, record)):
        raise ClassroomError(ErrorCode.FORBIDDEN, "only its teacher or an admin may change it")
    return record


def check_mint(claims: Claims, *, lesson: str, school: str, ttl: int | None,
               default_ttl: int, now: float | None = None) -> int:
    """The ttl a minted token gets: refused (forbidden) if it would be wider than the
    minter's own: another lesson, '*' from a lesson admin, another school, a later expiry.
    Any role may be minted: admin is the most a token can be, and it stays in this scope.
    Without an explicit ttl the default is cut to what the minter has left."""
    now = time.time() if now is None else now
    if claims.lesson != ANY_LESSON:
        if lesson != claims.lesson:
            raise ClassroomError(ErrorCode.FORBIDDEN,
                                 "a lesson admin mints tokens for its own lesson only")
        if school != claims.school:
            raise ClassroomError(ErrorCode.FORBIDDEN,
                                 "a lesson admin mints tokens of its own school only")
    left = int(claims.exp - now)
    if ttl is None:
        ttl = min(default_ttl, left)
    if ttl > left:
        raise ClassroomError(ErrorCode.FORBIDDEN, "the token would outlive the minter's own")
    if ttl <= 0:
        raise ClassroomError(ErrorCode.TOKEN_EXPIRED, "the minter's token has expired")
    return ttl


def relay_view(claims: Claims, stats: dict[str, Any]) -> dict[str, Any]:
    """Relay stats as this token may see them: '*' all; else its lesson's only."""
    if claims.lesson == ANY_LESSON:
        return stats
    lessons = stats.get("lessons") or {}
    return {"lessons": {k: v for k, v in lessons.items() if k == claims.lesson}}


def sees_answer_key(claims: Claims) -> bool:
    """Teachers, and admin/ops of the lesson, see the key before the reveal."""
    return claims.role in KEY_HOLDERS


# the table as Markdown -----------------------------------------------------------------------
def _roles_text(roles: frozenset[Role]) -> str:
    if not roles:
        return "no token"
    if roles == ALL:
        return "any"
    return ", ".join(r.value for r in Role if r in roles)


def markdown() -> str:
    """The table for docs/security.md (between its ``authz-table`` markers)."""
    lines = ["| action | roles | lesson | school | note |", "| --- | --- | --- | --- | --- |"]
    for rule in TABLE.values():
        lines.append(f"| `{rule.action}` | {_roles_text(rule.roles)} | {rule.lesson.value} | "
                     f"{rule.school.value} | {rule.note} |")
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"


def write_doc(path: Path = DOC) -> None:
    """Replace the table between the markers in ``path`` with :func:`markdown`."""
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- authz-table -->\n", "<!-- /authz-table -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + markdown() + end + tail, encoding="utf-8")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_doc()
    else:
        print(markdown(), end="")
