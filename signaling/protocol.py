"""Parse and validate WebSocket messages into typed objects.

Each message type has a schema (fields, types, sizes) and the roles allowed to send it.
Nothing past this module sees an unchecked value: a frame is bytes -> JSON -> ``Message``
or a :class:`ClassroomError` with the code the client is told.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .auth import Role
from .errors import ClassroomError, ErrorCode

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_BYTES = 48 * 1024

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

# Who may publish or subscribe media, by purpose (docs/two-way.md): the teacher publishes
# its camera (+ share) and receives the grid of classroom uplinks; a classroom receives the
# lesson and sends its own uplink. Any other role offering media is refused (forbidden).
MEDIA_ROLES: dict[str, frozenset[Role]] = {
    "publish": frozenset({Role.TEACHER}),
    "subscribe": frozenset({Role.CLASSROOM, Role.TEACHER}),
    "uplink": frozenset({Role.CLASSROOM}),
    "grid": frozenset({Role.TEACHER}),
}


@dataclass(frozen=True)
class Message:
    type: str
    data: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


def parse_frame(raw: str | bytes, schemas: dict[str, MessageSpec] | None = None) -> Message:
    """Turn one text frame into a schema-checked :class:`Message` (role not yet checked)."""
    schemas = SCHEMAS if schemas is None else schemas
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ClassroomError(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ClassroomError(ErrorCode.BAD_JSON, "message is not valid JSON") from None
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
    """Refuse a message the sender's role may not send."""
    schemas = SCHEMAS if schemas is None else schemas
    if role not in schemas[message.type].roles:
        raise ClassroomError(
            ErrorCode.FORBIDDEN, f"role {role.value} may not send {message.type}"
        )
    purpose = message.get("purpose")
    if purpose is not None and role not in MEDIA_ROLES[purpose]:
        raise ClassroomError(ErrorCode.FORBIDDEN, f"role {role.value} may not {purpose} media")
