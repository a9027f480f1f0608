"""Routes of classroom devices, the teacher's day and students' join codes (a Feature).

Who may call what is in signaling/authz.py's TABLE. Three kinds of caller:

* admin / school_admin bearer tokens: pair, list, read and revoke devices (only the
  devices of their schools: ``authz.school_scope``), mint a teacher's day link;
* a device credential (``Authorization: Device <id>.<secret>``, devices.py): the /room
  page asks ``GET /api/room/next`` for its classroom's lesson and a classroom token;
* no token: ``POST /api/pairing`` / ``GET /api/pairing/{code}/status`` (the pairing
  page, rate limited per address), ``POST /api/join`` (a student's code).

A teacher's day link is a teacher token with the lesson claim :data:`TODAY` (no lesson can
have that id: ids are letters, digits, ``_`` and ``-``) and ``sub = "teacher:<id>"``;
``GET /api/teacher/today`` exchanges it for per-lesson teacher tokens of today's lessons,
each limited to its lesson (the per-lesson rule of every teacher token is unchanged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from signaling import authz
from signaling.api import json_body, str_field
from signaling.auth import MAX_TTL_SECONDS, Claims, Role, mint_token
from signaling.errors import ClassroomError, ErrorCode
from signaling.features import Feature

from . import devices, join_codes, scheduler
from .model import check_id

if TYPE_CHECKING:
    from signaling.app import Node
    from signaling.handlers import Session

    from .db import SchoolDB

logger = logging.getLogger(__name__)

TODAY = "@today"
"""The lesson claim of a teacher's day link."""
TODAY_TTL = 30 * 86400
ONLINE_WITHIN = 120.0
"""A device that asked within this many seconds is online."""
SEEN_EVERY = 60.0
"""``last_seen`` is written at most this often per device (one write, not one a poll)."""
POLL_IDLE, POLL_WINDOW = 30.0, 10.0
"""Seconds between a /room page's questions: idle / in a lesson window."""
SWEEP_EVERY = 300.0
"""Seconds between two sweeps of expired pairing and join codes."""
DEVICE_SUB = "device-"
"""The ``sub`` of the classroom tokens minted for a device: ``device-<id>``."""


def _scope(claims: Claims) -> set[str] | None:
    return authz.school_scope(claims)


def _in_scope(claims: Claims, school_id: str) -> bool:
    scope = _scope(claims)
    return scope is None or school_id in scope


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class DevicesFeature(Feature):
    """Pairing, device credentials, the room's plan, auto-end, teacher's day, join codes."""

    name = "school-devices"
    messages = (scheduler.LessonEnding,)

    def __init__(self, *, clock: Any = time.time, rotate_after: float = devices.ROTATE_AFTER,
                 auto_end_tick: float = 5.0) -> None:
        self.clock = clock
        self.rotate_after = rotate_after
        self.auto_end_tick = auto_end_tick
        self.node: Node | None = None
        self.pairings = devices.Attempts(20, 600.0)  # codes asked for, per address
        self.guesses = devices.Attempts(10, 600.0)  # wrong pairing codes, per address
        self.joins = devices.Attempts(30, 600.0)  # wrong join codes, per address
        self.auto_end: scheduler.AutoEnd | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # lifetime -------------------------------------------------------------------------
    async def start(self, node: Node) -> None:
        self.node = node
        self.auto_end = scheduler.AutoEnd(lambda: getattr(node, "school_db", None), node.hub,
                                          tz=self.tz, overrun=self.overrun,
                                          tick=self.auto_end_tick, clock=lambda: self.clock())
        self.auto_end.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(),
                                                               name="code-sweep")

    async def close(self) -> None:
        if self.auto_end is not None:
            await self.auto_end.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        self.node = None

    async def sweep(self) -> int:
        """Delete expired pairing and join codes (they are refused anyway; this keeps the
        database small). Returns how many went."""
        now, gone = self.clock(), 0
        for kind, key in (("pairing", "code"), ("joincode", "code")):
            for doc in await self.db.list(kind):
                if doc.get("expires_at", 0) <= now and await self.db.delete(kind, doc[key]):
                    gone += 1
        return gone

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await self.sweep()
            except ClassroomError:
                pass  # the database is unavailable: next time
            except Exception:
                logger.exception("code sweep failed")

    @property
    def tz(self) -> str:
        from .timetable import default_timezone

        assert self.node is not None
        return self.node.config.timezone or default_timezone()

    @property
    def overrun(self) -> float:
        assert self.node is not None
        return float(self.node.config.overrun_minutes) * 60.0

    @property
    def db(self) -> SchoolDB:
        db = getattr(self.node, "school_db", None)
        if db is None:
            raise ClassroomError(ErrorCode.STORE_UNAVAILABLE, "school database not open")
        return db

    async def welcome(self, session: Session) -> dict[str, Any]:
        """A device's classroom token is refused once the device is revoked (the socket
        closes: invalid_token), so revocation holds at the next reconnect."""
        claims = session.claims
        if claims is not None and claims.lesson == TODAY:
            raise ClassroomError(ErrorCode.WRONG_LESSON, "a day link opens /teach, no lesson")
        if claims is not None and claims.sub.startswith(DEVICE_SUB):
            device = await self.db.get("device", claims.sub[len(DEVICE_SUB):])
            if device is None or device.get("revoked_at"):
                raise ClassroomError(ErrorCode.INVALID_TOKEN, "this device was revoked")
        return {}

    def _close_device_sockets(self, device_id: str) -> int:
        assert self.node is not None
        closing = [s for s in self.node.sessions
                   if s.claims is not None and s.claims.sub == DEVICE_SUB + device_id]
        for session in closing:
            self.node.spawn(session.ws.close(code=WSCloseCode.POLICY_VIOLATION,
                                             message=b"device revoked"))
        return len(closing)

    # routes ---------------------------------------------------------------------------
    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        def guard(action: str):  # noqa: ANN202 - a decorator
            return authz.guard(action, lambda request: request.app[node_key].config.secret)

        def public(action: str, method: Any) -> Any:
            async def handler(request: web.Request) -> web.StreamResponse:
                return await method(request)

            return authz.public(action)(handler)

        r = app.router
        r.add_post("/api/pairing", public("POST /api/pairing", self.new_pairing))
        r.add_get("/api/pairing/{code}/status",
                  public("GET /api/pairing/{code}/status", self.pairing_status))
        r.add_post("/api/devices", guard("POST /api/devices")(self.pair))
        r.add_get("/api/devices", guard("GET /api/devices")(self.list_devices))
        r.add_get("/api/devices/{device}", guard("GET /api/devices/{device}")(self.get_device))
        r.add_delete("/api/devices/{device}",
                     guard("DELETE /api/devices/{device}")(self.revoke))
        r.add_get("/api/room/next", public("GET /api/room/next", self.room_next))
        r.add_post("/api/teacher/links", guard("POST /api/teacher/links")(self.teacher_link))
        r.add_get("/api/teacher/today", guard("GET /api/teacher/today")(self.teacher_today))
        r.add_post("/api/lessons/{lesson}/join-code",
                   guard("POST /api/lessons/{lesson}/join-code")(self.lesson_join_code))
        r.add_post("/api/join", public("POST /api/join", self.join))

    # pairing --------------------------------------------------------------------------
    async def new_pairing(self, request: web.Request) -> web.Response:
        """A new TV asks for a code to show (no token; per-address limit)."""
        address = request.remote or ""
        self.pairings.check(address, "pairing codes")
        self.pairings.note(address)
        now = self.clock()
        db = self.db
        for _ in range(5):
            doc, poll_token = devices.new_pairing(now, address)
            taken = await db.get("pairing", doc["code"])
            if taken is None or taken.get("expires_at", 0) <= now:
                break
        else:
            raise ClassroomError(ErrorCode.RATE_LIMITED, "no free pairing code; retry")
        await db.put("pairing", doc["code"], doc)
        return web.json_response({"code": doc["code"], "expires_at": doc["expires_at"],
                                  "poll_token": poll_token}, status=201)

    async def pairing_status(self, request: web.Request) -> web.Response:
        """The pairing page asks whether an admin entered its code (poll token in the
        ``X-Pairing-Token`` header): ``waiting`` or ``paired`` with the device id (its
        credential is ``<device id>.<poll token>``, which only this page knows)."""
        address = request.remote or ""
        self.guesses.check(address, "wrong pairing codes")
        code = request.match_info["code"]
        token = request.headers.get("X-Pairing-Token", "")
        doc = await self.db.get("pairing", code) if code.isdigit() else None
        if doc is None or not token or not devices.poll_matches(doc, token):
            self.guesses.note(address)
            raise ClassroomError(ErrorCode.NOT_FOUND, "no such pairing")
        now = self.clock()
        if doc.get("device_id"):
            await self.db.delete("pairing", code)  # delivered: single use
            device = await self.db.get("device", doc["device_id"]) or {}
            return web.json_response({"state": "paired", "device_id": doc["device_id"],
                                      "classroom_id": device.get("classroom_id"),
                                      "name": device.get("name")})
        if doc["expires_at"] <= now:
            await self.db.delete("pairing", code)
            return web.json_response({"state": "expired"})
        return web.json_response({"state": "waiting", "expires_at": doc["expires_at"]})

    async def pair(self, request: web.Request, claims: Claims) -> web.Response:
        """An admin enters a TV's code and its classroom: the device record (201)."""
        address = request.remote or ""
        self.guesses.check(address, "wrong pairing codes")
        body = await json_body(request)
        code = devices.normalize_code(body.get("code"))
        classroom_id = check_id(body.get("classroom_id"), "classroom_id")
        name = str_field(body, "name", "", 100)
        db = self.db
        classroom = await db.get("classroom", classroom_id)
        if classroom is None or not _in_scope(claims, classroom.get("school_id", "")):
            raise ClassroomError(ErrorCode.NOT_FOUND, f"no classroom {classroom_id!r}")
        now = self.clock()
        try:
            pairing = devices.live_pairing(await db.get("pairing", code), now)
        except ClassroomError:
            self.guesses.note(address)
            raise
        device = devices.new_device(pairing, classroom=classroom, name=name, now=now)

        async def unclaimed(tx: SchoolDB) -> None:
            # two admins entering one code (two schools, two classrooms): one wins
            current = await tx.get("pairing", code)
            if current is None or current.get("device_id"):
                raise ClassroomError(ErrorCode.CONFLICT,
                                     "this code was just used to pair another classroom")

        await db.apply([("device", device["id"], device),
                        ("pairing", code, {**pairing, "device_id": device["id"]})], [],
                       guard=unclaimed)
        logger.info("device paired", extra={"device": device["id"],
                                            "classroom": classroom_id})
        return web.json_response(self._view(device, now), status=201)

    # the console's device list ----------------------------------------------------------
    def _view(self, device: dict[str, Any], now: float) -> dict[str, Any]:
        out = devices.public(device)
        out["online"] = bool(not device.get("revoked_at") and device.get("last_seen")
                             and now - device["last_seen"] < ONLINE_WITHIN)
        return out

    async def _device(self, request: web.Request, claims: Claims) -> dict[str, Any]:
        device_id = check_id(request.match_info["device"], "device")
        device = await self.db.get("device", device_id)
        if device is None or not _in_scope(claims, device.get("school_id", "")):
            raise ClassroomError(ErrorCode.NOT_FOUND, f"no device {device_id!r}")
        return device

    async def list_devices(self, request: web.Request, claims: Claims) -> web.Response:
        school = request.query.get("school", "")
        if school:
            check_id(school, "school")
            if not _in_scope(claims, school):
                raise ClassroomError(ErrorCode.FORBIDDEN, "not one of your schools")
            found = await self.db.list("device", school_id=school)
        else:
            scope = _scope(claims)
            found = [d for d in await self.db.list("device")
                     if scope is None or d.get("school_id") in scope]
        now = self.clock()
        return web.json_response({"devices": [self._view(d, now) for d in found]})

    async def get_device(self, request: web.Request, claims: Claims) -> web.Response:
        return web.json_response(self._view(await self._device(request, claims),
                                            self.clock()))

    async def revoke(self, request: web.Request, claims: Claims) -> web.Response:
        """Revoke: its next request and socket are refused; its open sockets close now."""
        device = await self._device(request, claims)
        now = self.clock()
        if not device.get("revoked_at"):
            device = {**device, "revoked_at": now}
            await self.db.put("device", device["id"], device)
        closed = self._close_device_sockets(device["id"])
        logger.info("device revoked", extra={"device": device["id"], "sockets": closed})
        return web.json_response(self._view(device, now))

    # the room page --------------------------------------------------------------------
    async def _authenticate(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        """The device of the request's credential, rotated when due: (record, new secret)."""
        device_id, secret = devices.parse_credential(request.headers.get("Authorization", ""))
        now = self.clock()
        device = await self.db.get("device", device_id)
        which = devices.check_secret(device, secret, now)
        assert device is not None
        updated, fresh = devices.rotate(device, which, now, rotate_after=self.rotate_after)
        return updated, fresh

    async def room_next(self, request: web.Request) -> web.Response:
        """The device's current lesson (with a classroom token for it), its next lesson, a
        new credential when rotated, and when to ask again."""
        device, fresh = await self._authenticate(request)
        assert self.node is not None
        now = self.clock()
        db = self.db
        classroom = await db.get("classroom", device["classroom_id"]) or {}
        school = await db.get("school", device["school_id"]) or {}
        plan = await scheduler.room_plan(db, self.node.hub, device["classroom_id"], now,
                                         tz=self.tz, overrun=self.overrun)
        current = plan["current"]
        body: dict[str, Any] = {
            "device_id": device["id"], "server_time": now,
            "classroom": {"id": classroom.get("id", device["classroom_id"]),
                          "name": classroom.get("name", "")},
            "school": {"id": device["school_id"], "name": school.get("name", "")},
            **plan,
        }
        if current is not None:
            until = current["ends_at"] + self.overrun
            ttl = int(min(MAX_TTL_SECONDS, max(60, until - now + 900)))
            current["token"] = mint_token(
                self.node.config.secret, role=Role.CLASSROOM, lesson=current["lesson_id"],
                school=device["school_id"], name=classroom.get("name") or device["name"],
                sub=DEVICE_SUB + device["id"], ttl=ttl)
            join = await self._join_code(current["lesson_id"], device["school_id"],
                                         device["classroom_id"], until)
            url = join_codes.join_url(_origin(request), join["code"])
            current["join"] = {"code": join["code"], "expires_at": join["expires_at"],
                               "qr": join_codes.qr_svg_data_uri(url)}
        nxt = plan["next"]
        if current is not None:
            poll = POLL_WINDOW
        elif nxt is not None:
            poll = max(1.0, min(POLL_IDLE, nxt["starts_at"] - scheduler.LEAD - now))
        else:
            poll = POLL_IDLE
        body["poll_after"] = poll
        lesson_now = current["lesson_id"] if current else None
        if (fresh is not None or now - (device.get("last_seen") or 0) >= SEEN_EVERY
                or device.get("lesson_id") != lesson_now):
            await db.put("device", device["id"], {**device, "last_seen": now,
                                                  "lesson_id": lesson_now})
        if fresh is not None:
            body["credential"] = devices.credential(device["id"], fresh)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    # join codes -----------------------------------------------------------------------
    async def _join_code(self, lesson_id: str, school_id: str, classroom_id: str,
                         expires_at: float) -> dict[str, Any]:
        """The classroom's code for the lesson (the same one on every ask)."""
        db = self.db
        for doc in await db.list("joincode", lesson_id=lesson_id, classroom_id=classroom_id):
            if doc["expires_at"] > self.clock():
                return doc
        for _ in range(5):
            doc = join_codes.new_join(lesson_id, school_id, classroom_id, expires_at)
            if await db.get("joincode", doc["code"]) is None:
                await db.put("joincode", doc["code"], doc)
                return doc
        raise ClassroomError(ErrorCode.RATE_LIMITED, "no free join code; retry")

    async def lesson_join_code(self, request: web.Request, claims: Claims) -> web.Response:
        """A code for a lesson (teacher or admin of it): ``{classroom_id?}`` in the body;
        without one, a code for the lesson's main classroom, in the caller's school."""
        lesson_id = request.match_info["lesson"]
        body = await json_body(request) if request.can_read_body else {}
        assert self.node is not None
        lesson = await self.node.hub.get_lesson(lesson_id)
        classroom_id = str_field(body, "classroom_id", "", 64)
        school_id = claims.school or lesson.school
        parts = scheduler.split_lesson_id(lesson_id)
        slot = await self.db.get("slot", parts[0]) if parts else None
        if classroom_id:
            check_id(classroom_id, "classroom_id")
            room = await self.db.get("classroom", classroom_id)
            if room is None or (claims.school and room.get("school_id") != claims.school):
                raise ClassroomError(ErrorCode.NOT_FOUND, f"no classroom {classroom_id!r}")
            school_id = room["school_id"]
        elif slot:
            classroom_id = slot.get("main_classroom_id", "")
        now = self.clock()
        until = (scheduler.end_deadline(slot, parts[1], self.tz, self.overrun)
                 if slot and parts else now + 4 * 3600)
        if until <= now:
            raise ClassroomError(ErrorCode.LESSON_ENDED, "the lesson is over")
        doc = await self._join_code(lesson_id, school_id, classroom_id or "-", until)
        url = join_codes.join_url(_origin(request), doc["code"])
        return web.json_response({"code": doc["code"], "expires_at": doc["expires_at"],
                                  "url": url, "qr": join_codes.qr_svg_data_uri(url)},
                                 status=201)

    async def join(self, request: web.Request) -> web.Response:
        """A student's code -> a student token for that lesson, of the classroom's school,
        expiring with the code (no token needed; wrong codes limited per address)."""
        address = request.remote or ""
        self.joins.check(address, "wrong join codes")
        body = await json_body(request)
        try:
            code = join_codes.normalize(body.get("code"))
            doc = join_codes.live_join(await self.db.get("joincode", code), self.clock())
        except ClassroomError:
            self.joins.note(address)
            raise
        assert self.node is not None
        ttl = int(min(MAX_TTL_SECONDS, max(60, doc["expires_at"] - self.clock())))
        name = str_field(body, "name", "", 40)
        token = mint_token(self.node.config.secret, role=Role.STUDENT, lesson=doc["lesson_id"],
                           school=doc["school_id"], name=name, ttl=ttl)
        return web.json_response({"token": token, "lesson": doc["lesson_id"],
                                  "page": f"/answer/{doc['lesson_id']}"}, status=201)

    # the teacher's day ----------------------------------------------------------------
    async def teacher_link(self, request: web.Request, claims: Claims) -> web.Response:
        """A teacher's day token (``{teacher_id}``; admin/school_admin of its school):
        opens ``/teach#token=...``, the list of the teacher's lessons of each day."""
        body = await json_body(request)
        teacher_id = check_id(body.get("teacher_id"), "teacher_id")
        teacher = await self.db.get("teacher", teacher_id)
        if teacher is None or not _in_scope(claims, teacher.get("school_id", "")):
            raise ClassroomError(ErrorCode.NOT_FOUND, f"no teacher {teacher_id!r}")
        now = self.clock()
        ttl = min(TODAY_TTL, int(claims.exp - time.time()))
        token = mint_token(self.node.config.secret if self.node else "", role=Role.TEACHER,
                           lesson=TODAY, school=teacher["school_id"], name=teacher["name"],
                           sub=f"teacher:{teacher_id}", ttl=ttl)
        return web.json_response({"token": token, "page": "/teach",
                                  "expires_at": now + ttl}, status=201)

    async def teacher_today(self, request: web.Request, claims: Claims) -> web.Response:
        """Today's lessons of the day token's teacher, each with a teacher token for that
        lesson only (one click from /teach to /teach/{lesson})."""
        if claims.lesson != TODAY or not claims.sub.startswith("teacher:"):
            # a one-lesson teacher token has no day list (404, not a refusal of the role)
            raise ClassroomError(ErrorCode.NOT_FOUND,
                                 "no day list for this token: a teacher's day link is needed")
        assert self.node is not None
        teacher_id = claims.sub.split(":", 1)[1]
        now = self.clock()
        lessons = await scheduler.teacher_today(self.db, self.node.hub, teacher_id, now,
                                                self.tz, self.overrun)
        for lesson in lessons:
            until = lesson["ends_at"] + self.overrun
            if lesson["state"] in ("ended", "missed") or until <= now:
                continue
            ttl = int(min(MAX_TTL_SECONDS, until - now + 3600, claims.exp - time.time()))
            if ttl > 0:
                lesson["token"] = mint_token(
                    self.node.config.secret, role=Role.TEACHER, lesson=lesson["lesson_id"],
                    school=claims.school, name=claims.name, sub=claims.sub, ttl=ttl)
        return web.json_response({"teacher": {"id": teacher_id, "name": claims.name},
                                  "date": scheduler.today(self.tz, now),
                                  "server_time": now, "lessons": lessons})
