"""Students join a lesson's answer page with a short code (or its QR code) shown on the TV.

A code is 6 characters of an alphabet without look-alikes (no 0/O, 1/I/L), issued per
lesson and classroom, stored as kind ``joincode`` under the code, valid until the lesson's
end plus the overrun. ``POST /api/join {code}`` (devices_api.py) exchanges it for a
student token of that lesson, scoped to the classroom's school; wrong codes are counted
per address (devices.Attempts). The code travels in a POST body or a URL fragment
(``/join#code=...``, what the QR code holds), never in a URL the server logs.
"""

from __future__ import annotations

import secrets
from typing import Any

import segno

from signaling.errors import ClassroomError, ErrorCode

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LENGTH = 6


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(text: object) -> str:
    """Upper case, spaces dropped; bad_message unless 6 characters of the alphabet."""
    code = "".join(str(text).split()).upper() if isinstance(text, str) else ""
    if len(code) != LENGTH or any(ch not in ALPHABET for ch in code):
        raise ClassroomError(ErrorCode.BAD_MESSAGE,
                             f"'code' must be {LENGTH} letters/digits as shown on the screen")
    return code


def new_join(lesson_id: str, school_id: str, classroom_id: str, expires_at: float
             ) -> dict[str, Any]:
    return {"code": new_code(), "lesson_id": lesson_id, "school_id": school_id,
            "classroom_id": classroom_id, "expires_at": expires_at}


def live_join(doc: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """The code's record while valid; not_found for unknown or expired codes."""
    if doc is None or doc.get("expires_at", 0) <= now:
        raise ClassroomError(ErrorCode.NOT_FOUND, "no such join code (expired?)")
    return doc


def join_url(origin: str, code: str) -> str:
    """What the QR code holds: the /join page with the code in the fragment."""
    return f"{origin}/join#code={code}"


def qr_svg_data_uri(text: str) -> str:
    """An SVG QR code of ``text`` as a data: URI (pages allow data: images), made here
    without any network (segno is pure Python)."""
    return segno.make(text, error="m").svg_data_uri(scale=8, border=2)
