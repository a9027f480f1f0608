"""Signed tokens (JWT) and the roles of DESIGN.md.

A token names one lesson (or ``*`` for admin/ops) and one role. Tokens always expire;
the secret never appears in logs. Verification failures become :class:`ClassroomError`.
"""

from __future__ import annotations

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

    @property
    def all_lessons(self) -> bool:
        """Admin and ops tokens may carry ``lesson: "*"``."""
        return self in (Role.OPS, Role.ADMIN)


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
) -> str:
    """Return a signed token; raises ValueError on an impossible combination."""
    role = Role(role)
    if not lesson:
        raise ValueError("lesson is required")
    if lesson == ANY_LESSON and not role.all_lessons:
        raise ValueError(f"role {role.value} must name one lesson, not '*'")
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
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: object, *, leeway: float = 5.0) -> Claims:
    """Decode and check a token; every failure is a ClassroomError with a precise code."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token missing or malformed")
    try:
        data = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=leeway,
            options={"require": ["exp", "iat", "sub", "role", "lesson"]},
        )
    except jwt.ExpiredSignatureError:
        raise ClassroomError(ErrorCode.TOKEN_EXPIRED, "token has expired") from None
    except jwt.PyJWTError as exc:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, f"token rejected: {exc}") from None
    try:
        role = Role(data["role"])
    except ValueError:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "unknown role in token") from None
    lesson = data["lesson"]
    if not isinstance(lesson, str) or not lesson:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "token names no lesson")
    if lesson == ANY_LESSON and not role.all_lessons:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "only admin and ops may hold '*'")
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
        exp=int(data["exp"]),
        iat=int(data["iat"]),
    )
