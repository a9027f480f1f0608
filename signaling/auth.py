"""Signed tokens (JWT) and the roles of DESIGN.md.

A token names one lesson (or ``*`` for admin/ops) and one role. Tokens always expire, and
the lifetime is bounded where it counts, at verification: numeric ``exp``/``iat``,
``exp - iat`` and ``exp - now`` at most :data:`MAX_TTL_SECONDS`. A session token
(:func:`mint_session_token`) renews an open page's identity; its chain never outlives
``auth_time + MAX_TTL_SECONDS``. The secret never appears in logs. Verification failures
become :class:`ClassroomError`.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import jwt

from .errors import ClassroomError, ErrorCode

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 8 * 3600
MAX_TTL_SECONDS = 30 * 24 * 3600
ANY_LESSON = "*"


class Role(str, Enum):
    TEACHER = "teacher"
    CLASSROOM = "classroom"
    STUDENT = "student"
    OPS = "ops"
    ADMIN = "admin"
    SCHOOL_ADMIN = "school_admin"
    """Administers one school's directory, timetable, devices and statistics (its
    ``school`` claim, required); bound to no lesson: its ``lesson`` claim is ``*``, which
    gives it no lesson at all (docs/school-week.md)."""

    @property
    def all_lessons(self) -> bool:
        """Admin and ops tokens may carry ``lesson: "*"`` (every lesson)."""
        return self in (Role.OPS, Role.ADMIN)

    @property
    def lessonless(self) -> bool:
        """Tokens of this role name no lesson (``lesson: "*"``, meaning none)."""
        return self is Role.SCHOOL_ADMIN


@dataclass(frozen=True)
class Claims:
    sub: str
    role: Role
    lesson: str
    school: str
    name: str
    exp: int
    iat: int
    cap_kbps: int | None = None
    """Optional: the school's bandwidth cap for this lesson (kbit/s), from a classroom token."""
    auth_time: int = 0
    """When the admin's original token was issued (session tokens carry it on; 0: = iat)."""

    def may_access(self, lesson_id: str) -> bool:
        return self.lesson == lesson_id or (self.role.all_lessons and self.lesson == ANY_LESSON)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def mint_token(
    secret: str,
    *,
    role: Role | str,
    lesson: str,
    school: str = "",
    name: str = "",
    ttl: int = DEFAULT_TTL_SECONDS,
    sub: str | None = None,
    now: float | None = None,
    cap_kbps: int | None = None,
    auth_time: int | None = None,
) -> str:
    """Return a signed token; raises ValueError on an impossible combination."""
    role = Role(role)
    if not lesson:
        raise ValueError("lesson is required")
    if lesson == ANY_LESSON and not (role.all_lessons or role.lessonless):
        raise ValueError(f"role {role.value} must name one lesson, not '*'")
    if role.lessonless and (lesson != ANY_LESSON or not school):
        raise ValueError(f"role {role.value} names lesson '*' and its school")
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 and {MAX_TTL_SECONDS} seconds")
    issued = int(now if now is not None else time.time())
    payload: dict[str, Any] = {
        "sub": sub or f"{role.value}-{uuid.uuid4().hex[:12]}",
        "role": role.value,
        "lesson": lesson,
        "school": school,
        "name": name,
        "iat": issued,
        "exp": issued + ttl,
    }
    if cap_kbps is not None:
        if not isinstance(cap_kbps, int) or isinstance(cap_kbps, bool) or cap_kbps <= 0:
            raise ValueError("cap_kbps must be a positive integer")
        payload["cap_kbps"] = cap_kbps
    if auth_time is not None:
        payload["auth_time"] = int(auth_time)
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def mint_session_token(secret: str, claims: Claims, ttl: int,
                       now: float | None = None) -> tuple[str, int] | None:
    """A fresh short-lived token for the same identity (sub, role, lesson, school, name,
    cap), for an open page to renew itself with; ``(token, exp)``, or None once the chain
    reached ``auth_time + MAX_TTL_SECONDS`` (a new link from an admin is needed then)."""
    issued = int(now if now is not None else time.time())
    origin = claims.auth_time or claims.iat
    ttl = min(ttl, origin + MAX_TTL_SECONDS - issued)
    if ttl <= 0:
        return None
    token = mint_token(secret, role=claims.role, lesson=claims.lesson, school=claims.school,
                       name=claims.name, ttl=ttl, sub=claims.sub, now=issued,
                       cap_kbps=claims.cap_kbps, auth_time=origin)
    return token, issued + ttl


def _numeric_date(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise ClassroomError(ErrorCode.INVALID_TOKEN, f"token '{name}' must be a number")
    return value


def verify_token(secret: str, token: object, *, leeway: float = 5.0,
                 now: float | None = None) -> Claims:
    """Decode and check a token; every failure is a ClassroomError with a precise code.

    The times are checked here rather than by PyJWT, so that a string, a float out of
    range or a lifetime over the maximum is refused the same way: invalid_token."""
    if (not isinstance(token, str) or not token or len(token) > 4096
            or not token.isascii()):
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token missing or malformed")
    try:
        data = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "sub", "role", "lesson"],
                     "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, f"token rejected: {exc}") from None
    now = time.time() if now is None else now
    exp, iat = _numeric_date(data, "exp"), _numeric_date(data, "iat")
    if iat > now + leeway:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token issued in the future")
    if exp - iat > MAX_TTL_SECONDS + leeway or exp > now + MAX_TTL_SECONDS + leeway:
        raise ClassroomError(ErrorCode.INVALID_TOKEN,
                             f"token lifetime over {MAX_TTL_SECONDS // 86400} days")
    if exp <= now - leeway:
        raise ClassroomError(ErrorCode.TOKEN_EXPIRED, "token has expired")
    auth_time = data.get("auth_time", iat)
    if (isinstance(auth_time, bool) or not isinstance(auth_time, (int, float))
            or not iat - MAX_TTL_SECONDS <= auth_time <= iat):
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token 'auth_time' out of range")
    if exp > auth_time + MAX_TTL_SECONDS + leeway:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token chain over its maximum lifetime")
    try:
        role = Role(data["role"])
    except ValueError:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "unknown role in token") from None
    lesson = data["lesson"]
    if not isinstance(lesson, str) or not lesson:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token names no lesson")
    if lesson == ANY_LESSON and not (role.all_lessons or role.lessonless):
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "only admin and ops may hold '*'")
    if role.lessonless and (lesson != ANY_LESSON or not data.get("school")
                            or not isinstance(data.get("school"), str)):
        raise ClassroomError(ErrorCode.INVALID_TOKEN,
                             f"a {role.value} token names lesson '*' and its school")
    cap = data.get("cap_kbps")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "cap_kbps must be a positive integer")
    return Claims(
        cap_kbps=cap,
        sub=str(data["sub"]),
        role=role,
        lesson=lesson,
        school=str(data.get("school") or ""),
        name=str(data.get("name") or ""),
        exp=int(exp),
        iat=int(iat),
        auth_time=int(auth_time),
    )
