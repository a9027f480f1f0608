"""Classroom devices: pairing codes and long-lived, rotated, revocable device credentials.

Why a credential of its own (not a signed token): a TV stays in its classroom for years;
a JWT lives 30 days at most and cannot be revoked. So a device holds an opaque secret
(``<device id>.<secret>``, kept in the browser's localStorage, sent only in the
``Authorization: Device ...`` header); the database keeps its SHA-256 only. The server
mints the TV a short classroom token for each lesson it joins (scheduler.py).

Pairing (docs/school-week.md): the /room page asks for a code (``POST /api/pairing``) and
gets ``code`` (6 digits, 10 minutes) and a ``poll_token`` (random, 32 bytes) that only
this page knows. The database keeps the poll token's hash; when an admin enters the code
(``POST /api/devices``), that hash becomes the device's secret hash: the poll token *is*
the device's first secret, so no plaintext secret is ever stored. Codes are single-use;
unknown, expired or used codes are counted per address (:class:`Attempts`).

Rotation: on use, a secret older than ``rotate_after`` is replaced; the old one stays
valid ``overlap`` seconds (a reply lost on the way does not lock the TV out: using the old
secret in the overlap rotates again). Revocation sets ``revoked_at``: the next request or
socket hello of the device is refused (the feature also closes its open sockets).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from typing import Any

from signaling.errors import ClassroomError, ErrorCode

from .model import check_id

PAIRING_TTL = 600.0
"""Seconds a pairing code is valid."""
CODE_DIGITS = 6
ROTATE_AFTER = 86400.0
"""A device secret older than this is replaced on its next use."""
OVERLAP = 600.0
"""Seconds the replaced secret stays valid."""
SCHEME = "device"
"""``Authorization: Device <device id>.<secret>``."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_code() -> str:
    """Six digits: easy to read across a classroom and to type in the console."""
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def normalize_code(text: object) -> str:
    """A typed code without spaces or dashes; bad_message if it is not 6 digits."""
    code = "".join(ch for ch in str(text) if ch not in " -") if isinstance(text, str) else ""
    if len(code) != CODE_DIGITS or not code.isdigit():
        raise ClassroomError(ErrorCode.BAD_MESSAGE, f"'code' must be {CODE_DIGITS} digits")
    return code


class Attempts:
    """Per-address count of a kind of attempt (codes asked for, codes that were wrong) in
    a sliding window: over ``limit`` in ``window`` seconds, rate_limited. Per node; the
    least recent addresses are forgotten past ``max_addresses``."""

    def __init__(self, limit: int, window: float, *, clock: Any = time.monotonic,
                 max_addresses: int = 10000) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_addresses = max_addresses
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        times = self._seen.get(address)
        if times is None:
            times = self._seen[address] = deque()
            while len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
        self._seen.move_to_end(address)
        cut = self.clock() - self.window
        while times and times[0] <= cut:
            times.popleft()
        return times

    def check(self, address: str, what: str) -> None:
        """rate_limited while ``address`` has used up its attempts."""
        if len(self._recent(address)) >= self.limit:
            raise ClassroomError(ErrorCode.RATE_LIMITED,
                                 f"too many {what} from your address; wait and retry")

    def note(self, address: str) -> None:
        """Count one attempt of ``address``."""
        self._recent(address).append(self.clock())


def new_pairing(now: float, address: str) -> tuple[dict[str, Any], str]:
    """A pairing record (stored as kind ``pairing`` under its code) and the poll token."""
    poll_token = secrets.token_urlsafe(32)
    code = new_code()
    doc = {"code": code, "poll_hash": hash_secret(poll_token), "created_at": now,
           "expires_at": now + PAIRING_TTL, "address": address, "device_id": None}
    return doc, poll_token


def live_pairing(doc: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """The pairing if it may still be claimed; not_found for unknown, expired or used
    (one answer for all three: a guesser learns nothing)."""
    if doc is None or doc.get("expires_at", 0) <= now or doc.get("device_id"):
        raise ClassroomError(ErrorCode.NOT_FOUND, "no such pairing code (expired or used?)")
    return doc


def poll_matches(doc: dict[str, Any], poll_token: str) -> bool:
    return hmac.compare_digest(doc.get("poll_hash", ""), hash_secret(poll_token))


def new_device(pairing: dict[str, Any], *, classroom: dict[str, Any], name: str,
               now: float) -> dict[str, Any]:
    """The device record a claimed pairing becomes (its secret: the page's poll token)."""
    device_id = f"dev-{secrets.token_hex(6)}"
    return {"id": device_id, "classroom_id": classroom["id"],
            "school_id": classroom["school_id"], "name": name or classroom.get("name", ""),
            "secret_hash": pairing["poll_hash"], "created_at": now, "last_seen": None,
            "revoked_at": None, "rotated_at": now, "prev_secret_hash": None,
            "prev_valid_until": None}


def parse_credential(header: str) -> tuple[str, str]:
    """``(device id, secret)`` of ``Authorization: Device <id>.<secret>``."""
    scheme, _, value = header.partition(" ")
    device_id, _, secret = value.strip().partition(".")
    if scheme.lower() != SCHEME or not secret or len(value) > 200:
        raise ClassroomError(ErrorCode.NOT_AUTHENTICATED,
                             "Authorization: Device <credential> needed")
    try:
        check_id(device_id, "device")
    except ClassroomError:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "malformed device credential") from None
    return device_id, secret


def check_secret(device: dict[str, Any] | None, secret: str, now: float) -> str:
    """``"current"`` or ``"previous"`` (in its overlap); invalid_token otherwise, revoked
    included (the page then pairs again)."""
    if device is None:
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "unknown device credential")
    if device.get("revoked_at"):
        raise ClassroomError(ErrorCode.INVALID_TOKEN, "this device was revoked")
    digest = hash_secret(secret)
    if hmac.compare_digest(device.get("secret_hash") or "", digest):
        return "current"
    prev, until = device.get("prev_secret_hash"), device.get("prev_valid_until") or 0
    if prev and now < until and hmac.compare_digest(prev, digest):
        return "previous"
    raise ClassroomError(ErrorCode.INVALID_TOKEN, "device credential not valid (rotated?)")


def rotate(device: dict[str, Any], which: str, now: float, *,
           rotate_after: float = ROTATE_AFTER, overlap: float = OVERLAP
           ) -> tuple[dict[str, Any], str | None]:
    """``(record, new secret or None)``: a new secret when the current one is older than
    ``rotate_after``, or when the previous one was used in its overlap (the reply with
    the new one was lost). The replaced secret stays valid ``overlap`` seconds; a
    previous secret keeps its original overlap (it is never extended)."""
    age = now - (device.get("rotated_at") or device.get("created_at") or now)
    if which == "current" and age < rotate_after:
        return device, None
    secret = secrets.token_urlsafe(32)
    doc = dict(device)
    if which == "current":
        doc["prev_secret_hash"] = device.get("secret_hash")
        doc["prev_valid_until"] = now + overlap
    doc["secret_hash"] = hash_secret(secret)
    doc["rotated_at"] = now
    return doc, secret


def public(device: dict[str, Any]) -> dict[str, Any]:
    """The device as the console sees it: no hashes."""
    return {k: v for k, v in device.items()
            if k not in ("secret_hash", "prev_secret_hash", "prev_valid_until")}


def credential(device_id: str, secret: str) -> str:
    return f"{device_id}.{secret}"
