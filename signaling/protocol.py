"""Parse WebSocket frames into typed messages; the one JSON decoder for HTTP bodies.

The message types are msgspec Structs (signaling/messages/: base.py says how to declare
one; core.py, the features' own). Nothing past this module sees an unchecked value: a
frame is text -> typed ``Message`` (one msgspec pass: fields, types, limits, nested
bodies) or a :class:`ClassroomError` with the code the client is told and, whenever the
frame's ``type`` was readable, its ``ref``. :func:`decode_json` keeps the contract's JSON
refusals for HTTP bodies and for explaining a refused frame (errors only).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from prometheus_client import Counter

from .auth import Role
from .errors import ClassroomError, ErrorCode
from .messages import core
from .messages.base import (
    MAX_JSON_INT,
    ClientMessage,
    FieldSpec,
    MessageSpec,
    Registry,
    peek_type,
    with_ref,
)

__all__ = ["MAX_MESSAGE_BYTES", "MAX_SDP_BYTES", "MAX_JSON_DEPTH", "MAX_JSON_INT", "Message",
           "FieldSpec", "MessageSpec", "Registry", "REGISTRY", "SCHEMAS", "decode_json",
           "parse_frame", "check_role", "utf8_size"]

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_BYTES = core.MAX_SDP_BYTES
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects a frame or body may have (no message needs 6)."""

Message = ClientMessage
"""A decoded client message: ``msg.type``, its fields as attributes (``msg.get(name)``)."""
REGISTRY = Registry(core.MESSAGES)
"""The core message types only; a Node builds its own with its features' (app.py)."""
SCHEMAS: dict[str, MessageSpec] = REGISTRY.specs
OUTGOING_INVALID = Counter(
    "classroom_protocol_outgoing_invalid_total",
    "Messages the server sent that do not match their declared type (a bug; logged)",
    ["type"])

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


def parse_frame(raw: str | bytes, registry: Registry | None = None) -> Message:
    """Turn one text frame into its typed message (role not yet checked), or
    ClassroomError; an error carries ``ref`` (the frame's ``type``) whenever it is readable."""
    registry = REGISTRY if registry is None else registry
    if len(raw) > MAX_MESSAGE_BYTES or utf8_size(raw) > MAX_MESSAGE_BYTES:
        raise ClassroomError(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        if raw.count("[" if isinstance(raw, str) else b"[") + \
                raw.count("{" if isinstance(raw, str) else b"{") > MAX_JSON_DEPTH:
            try:
                _check_depth(raw if isinstance(raw, str) else raw.decode("utf-8"))
            except _Refused as exc:
                raise ClassroomError(ErrorCode.BAD_JSON, f"JSON refused: {exc}") from None
            except UnicodeDecodeError:
                raise ClassroomError(ErrorCode.BAD_JSON, "not valid JSON") from None
        return registry.decode(raw)
    except ClassroomError as err:
        if getattr(err, "ref", None) is None:
            msg_type = peek_type(raw)
            if msg_type is not None:
                with_ref(err, msg_type, None)
        raise


def check_role(message: Message, role: Role, registry: Any = None) -> None:
    """Refuse a message the sender's role may not send (the authorization table decides)."""
    from .authz import check_message

    del registry  # kept for callers: the table, not the message type, holds the roles
    check_message(role, message.type, message.get("purpose"))
