"""Parse and validate WebSocket messages into typed objects.

Each message type has a schema (fields, types, sizes) and the roles allowed to send it.
Nothing past this module sees an unchecked value: a frame is bytes -> JSON -> ``Message``
or a :class:`ClassroomError` with the code the client is told.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .auth import Role
from .errors import ClassroomError, ErrorCode

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_BYTES = 48 * 1024
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects a frame or body may have (no message needs 6)."""
MAX_JSON_INT = 2**53 - 1
"""Largest integer magnitude accepted: what a browser's Number holds exactly."""

_STRING_LITERAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(ValueError):
    """A JSON text that parses but holds a value the contract refuses."""


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 16 or abs(value := int(text)) > MAX_JSON_INT:
        raise _Refused(f"integers must be within +-{MAX_JSON_INT}")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("numbers must be finite")
    return value


def _check_depth(text: str) -> None:
    """Refuse nesting over MAX_JSON_DEPTH by counting brackets outside strings: a loop,
    never recursion (json.loads itself recurses and raises RecursionError ~1,000 deep)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    for match in _BRACKET.finditer(_STRING_LITERAL.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _Refused(f"nested deeper than {MAX_JSON_DEPTH}")
        else:
            depth -= 1


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates (``"\\ud800"``): they cannot be encoded as UTF-8, so they
    would fail later in a token check, the store or a reply. Iterative walk."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _Refused("strings must not hold lone surrogates")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def decode_json(raw: str | bytes | bytearray) -> Any:
    """The one JSON decoder for WebSocket frames and HTTP bodies.

    Refuses (``bad_json``) what ``json.loads`` would accept but the contract does not:
    NaN/Infinity, numbers that overflow to infinity, integers beyond +-2**53-1, nesting
    over MAX_JSON_DEPTH, lone surrogates. Never raises anything but ClassroomError.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        _check_depth(text)
        data = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            _check_strings(data)
    except _Refused as exc:
        raise ClassroomError(ErrorCode.BAD_JSON, f"JSON refused: {exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
        raise ClassroomError(ErrorCode.BAD_JSON, "not valid JSON") from None
    return data


def utf8_size(text: str | bytes) -> int:
    """Bytes ``text`` takes on the wire (the frame limit counts bytes, not characters)."""
    if isinstance(text, (bytes, bytearray)):
        return len(text)
    if len(text) * 4 <= MAX_MESSAGE_BYTES:
        return len(text)  # certainly under the limit; exact size not needed
    return len(text.encode("utf-8", "surrogatepass"))


_ALL = frozenset(Role)
_MEDIA_PURPOSES = ("publish", "subscribe", "uplink", "grid")


@dataclass(frozen=True)
class FieldSpec:
    kind: type | tuple[type, ...]
    required: bool = True
    max_len: int | None = None
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class MessageSpec:
    roles: frozenset[Role]
    fields: dict[str, FieldSpec] = field(default_factory=dict)


SCHEMAS: dict[str, MessageSpec] = {
    "hello": MessageSpec(
        _ALL,
        {"token": FieldSpec(str, max_len=4096), "lesson": FieldSpec(str, False, 128)},
    ),
    "ping": MessageSpec(_ALL, {"ts": FieldSpec((int, float, str), False, 64)}),
    # a new token for the same sub/role/lesson, before the session's runs out (handlers.py)
    "refresh": MessageSpec(_ALL, {"token": FieldSpec(str, max_len=4096)}),
    "offer": MessageSpec(
        frozenset({Role.TEACHER, Role.CLASSROOM}),
        {
            "sdp": FieldSpec(str, max_len=MAX_SDP_BYTES),
            "purpose": FieldSpec(str, choices=_MEDIA_PURPOSES),
        },
    ),
    "ice": MessageSpec(
        frozenset({Role.TEACHER, Role.CLASSROOM}),
        {
            "purpose": FieldSpec(str, choices=_MEDIA_PURPOSES),
            "candidate": FieldSpec(str, max_len=1024),
            "sdpMid": FieldSpec((str, type(None)), False, 64),
            "sdpMLineIndex": FieldSpec((int, type(None)), False),
        },
    ),
    "start-lesson": MessageSpec(frozenset({Role.TEACHER})),
    "end-lesson": MessageSpec(frozenset({Role.TEACHER})),
    "low-bandwidth": MessageSpec(frozenset({Role.CLASSROOM}), {"on": FieldSpec(bool)}),
}

# Who may send what (media by purpose, docs/two-way.md) is signaling/authz.py's table;
# the roles above must match it (tests/signaling/test_authz_table.py checks).


@dataclass(frozen=True)
class Message:
    type: str
    data: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


def parse_frame(raw: str | bytes, schemas: dict[str, MessageSpec] | None = None) -> Message:
    """Turn one text frame into a schema-checked :class:`Message` (role not yet checked)."""
    schemas = SCHEMAS if schemas is None else schemas
    if len(raw) > MAX_MESSAGE_BYTES or utf8_size(raw) > MAX_MESSAGE_BYTES:
        raise ClassroomError(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE_BYTES} bytes")
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise ClassroomError(ErrorCode.BAD_JSON, "message must be a JSON object")
    msg_type = data.get("type")
    if not isinstance(msg_type, str):
        raise ClassroomError(ErrorCode.BAD_MESSAGE, "message has no string 'type'")
    spec = schemas.get(msg_type)
    if spec is None:
        raise ClassroomError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {msg_type[:40]!r}")
    clean: dict[str, Any] = {}
    for name, fs in spec.fields.items():
        if name not in data:
            if fs.required:
                raise ClassroomError(ErrorCode.BAD_MESSAGE, f"{msg_type}: '{name}' is required")
            continue
        value = data[name]
        if (isinstance(value, bool) and fs.kind is not bool) or not isinstance(value, fs.kind):
            # bool is an int in Python: only a bool field takes a bool.
            raise ClassroomError(ErrorCode.BAD_MESSAGE, f"{msg_type}: '{name}' has the wrong type")
        if fs.max_len is not None and isinstance(value, str) and len(value) > fs.max_len:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, f"{msg_type}: '{name}' is too long")
        if fs.choices is not None and value not in fs.choices:
            raise ClassroomError(
                ErrorCode.BAD_MESSAGE, f"{msg_type}: '{name}' must be one of {list(fs.choices)}"
            )
        clean[name] = value
    return Message(msg_type, clean)


def check_role(message: Message, role: Role, schemas: dict[str, MessageSpec] | None = None
               ) -> None:
    """Refuse a message the sender's role may not send (the authorization table decides)."""
    from .authz import check_message

    del schemas  # kept for callers: the table, not the schema, holds the roles
    check_message(role, message.type, message.get("purpose"))
