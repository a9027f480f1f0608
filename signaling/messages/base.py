"""Typed WebSocket messages: how to declare one, and the registry that decodes them.

Every frame on ``/ws`` is a JSON object with a ``type``. Each type, in either direction,
is a :mod:`msgspec` ``Struct`` tagged with its ``type``; its annotations are the fields,
their types and their limits (``Annotated[..., Meta(...)]``), nested bodies included. The
server decodes a client frame straight into its Struct (one C pass, limits checked) and
checks what it sends against the server-side Structs; ``docs/protocol.md`` and
``classroom_web/static/protocol.schema.json`` are generated from the same classes
(``python -m signaling.protocol_docs --write``; a test fails when they differ).

Declaring a message (a feature lists its classes in ``messages``)::

    from typing import ClassVar
    from signaling.messages import ClientMessage, ServerMessage, Str, PeerId, Role

    class MuteClassroom(ClientMessage, tag="mute-classroom"):
        '''Mute or unmute a classroom's uplink (first line: the docs' description).'''
        roles: ClassVar = frozenset({Role.TEACHER})     # must equal signaling/authz.py's rows
        reply: ClassVar = "`muted` to the classroom"      # what answers it (docs)
        peer_id: PeerId                                   # required
        on: bool
        note: Str[200] | None = None                      # optional: default None

    class Muted(ServerMessage, tag="muted"):
        '''Your uplink was muted or unmuted by the teacher.'''
        on: bool

Rules: client fields are required unless they have a default (``None``: absent); a
server field that is sometimes absent defaults to ``UNSET`` (left out of the JSON). Every
``int`` is a :data:`Int` (+-2**53-1, what a browser holds); every string and list has a
maximum (``Str[n]``, ``Annotated[list[X], Meta(max_length=n)]``). A field whose bad value
must be told with a feature's own code lists it in ``field_errors`` (``{"tally":
ErrorCode.ANSWER_INVALID}``); otherwise a bad value is ``bad_message``. Unknown fields are
ignored (old pages keep working). Who may send a type is decided by the authorization
table (``signaling/authz.py``, checked once in ``Session._on_text``); ``roles`` declares
the same for the docs, and tests/signaling/test_authz_table.py keeps the two equal.
"""

import dataclasses
import re
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import msgspec
from msgspec import UNSET, Meta, UnsetType

from signaling.auth import Role
from signaling.errors import ClassroomError, ErrorCode

__all__ = [
    "UNSET", "Meta", "UnsetType", "Role", "ErrorCode", "ClientMessage", "ServerMessage",
    "Body", "Int", "NonNegInt", "Num", "Seconds", "Timestamp", "Str", "PeerId", "Id",
    "Registry", "FieldSpec", "MessageSpec", "MAX_JSON_INT", "WelcomeFields",
]

MAX_JSON_INT = 2**53 - 1
"""Largest integer magnitude accepted: what a browser's Number holds exactly."""

Int = Annotated[int, Meta(ge=-MAX_JSON_INT, le=MAX_JSON_INT)]
NonNegInt = Annotated[int, Meta(ge=0, le=MAX_JSON_INT)]
Num = Int | float
"""A finite JSON number (msgspec refuses NaN, Infinity and 1e400)."""
Seconds = Annotated[float, Meta(ge=0)]
Timestamp = Annotated[float, Meta(ge=0, description="Unix time, seconds (server clock)")]


class _StrOf:
    """``Str[n]``: a string of at most ``n`` characters."""

    def __getitem__(self, max_length: int) -> Any:
        return Annotated[str, Meta(max_length=max_length)]


Str = _StrOf()
PeerId = Annotated[str, Meta(min_length=1, max_length=64,
                             description="a peer id (`welcome.peer_id`, roster)")]
Id = Annotated[str, Meta(max_length=64)]


class _KwOnly(type(msgspec.Struct)):  # type: ignore[misc]
    """Every field keyword-only, in every subclass: required and optional fields may come
    in any order (msgspec's ``kw_only`` holds only for the class that says it)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any):
        kw.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, ns, **kw)


class Body(msgspec.Struct, metaclass=_KwOnly):
    """A nested object of a message (not a message itself)."""


class _Message(msgspec.Struct, metaclass=_KwOnly, tag_field="type"):
    roles: ClassVar[frozenset[Role]] = frozenset()
    field_errors: ClassVar[dict[str, ErrorCode]] = {}

    @property
    def type(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]

    @property
    def data(self) -> dict[str, Any]:
        """The fields the sender set (None and UNSET left out), as plain JSON values."""
        return {k: v for k, v in msgspec.to_builtins(self).items()
                if k != "type" and v is not None}

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self, name, None)
        return default if value is None or value is UNSET else value


class ClientMessage(_Message):
    """A message a page (or the headless client) sends; the server answers ``reply``."""

    reply: ClassVar[str] = ""


class ServerMessage(_Message, omit_defaults=False):
    """A message the server sends: a reply, or a lesson event every socket hears."""

    sent_to: ClassVar[str] = ""


class WelcomeFields(Body):
    """Fields a feature adds to ``welcome`` (what ``Feature.welcome`` returns): list a
    subclass in the feature's ``messages``; every field needs a default (``UNSET``: absent).
    The node's ``welcome`` type is the core's with every feature's fields."""


# --- the specs tests and the docs read (fields, kinds, limits) ------------------------------
@dataclasses.dataclass(frozen=True)
class FieldSpec:
    kind: type | tuple[type, ...]
    required: bool = True
    max_len: int | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    roles: frozenset[Role]
    fields: dict[str, FieldSpec] = dataclasses.field(default_factory=dict)
    cls: type[_Message] | None = None


_KIND = {msgspec.inspect.StrType: str, msgspec.inspect.BoolType: bool,
         msgspec.inspect.IntType: int, msgspec.inspect.FloatType: float,
         msgspec.inspect.ListType: list, msgspec.inspect.DictType: dict,
         msgspec.inspect.StructType: dict, msgspec.inspect.NoneType: type(None),
         msgspec.inspect.AnyType: object}


def _field_spec(field: msgspec.inspect.Field) -> FieldSpec:
    info = field.type
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    options = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    kinds: list[type] = []
    max_len = None
    choices = None
    for opt in options:
        while isinstance(opt, msgspec.inspect.Metadata):  # a description, not a type
            opt = opt.type
        if isinstance(opt, msgspec.inspect.LiteralType):
            choices = tuple(opt.values)
            kinds.append(type(opt.values[0]))
            continue
        kinds.append(_KIND.get(type(opt), object))
        if isinstance(opt, msgspec.inspect.StrType) and opt.max_length is not None:
            max_len = opt.max_length
    kinds = list(dict.fromkeys(kinds))
    return FieldSpec(kinds[0] if len(kinds) == 1 else tuple(kinds), field.required,
                     max_len, choices)


def spec_of(cls: type[_Message]) -> MessageSpec:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return MessageSpec(cls.roles, {f.encode_name: _field_spec(f) for f in info.fields}, cls)


# --- the registry -------------------------------------------------------------------------
_AT = re.compile(r"`\$\.([A-Za-z0-9_]+)")  # the top field of "- at `$.f.g`" or "`key` in `$.f`"


class _Envelope(msgspec.Struct):
    type: Any = None
    purpose: Any = None


_envelope = msgspec.json.Decoder(_Envelope)


def peek_type(raw: str | bytes) -> str | None:
    """The ``type`` of a frame, if it is a readable string (for an error's ``ref``)."""
    try:
        value = _envelope.decode(raw).type
    except (msgspec.MsgspecError, RecursionError):
        return None
    return value[:64] if isinstance(value, str) else None


def _decoder_of(types: tuple[type, ...]) -> msgspec.json.Decoder | None:
    return msgspec.json.Decoder(Union[types]) if types else None  # noqa: UP007


def _extend(base: type[ServerMessage], parts: list[type[WelcomeFields]]
            ) -> type[ServerMessage]:
    """``base`` with the fields of ``parts`` (a feature's welcome fields), same tag."""
    ns: dict[str, Any] = {"__annotations__": {}, "__module__": base.__module__,
                          "__doc__": base.__doc__, "sources": tuple(parts)}
    ns["__annotations__"]["sources"] = ClassVar[tuple[type, ...]]
    taken = set(base.__struct_fields__)
    for part in parts:
        for f in msgspec.structs.fields(part):
            if f.name in taken:
                raise ValueError(f"welcome field {f.name!r} declared twice ({part.__name__})")
            taken.add(f.name)
            ns["__annotations__"][f.name] = f.type
            if f.default_factory is not msgspec.NODEFAULT:
                ns[f.name] = msgspec.field(default_factory=f.default_factory)
            elif f.default is not msgspec.NODEFAULT:
                ns[f.name] = f.default
            else:
                raise TypeError(f"{part.__name__}.{f.name}: a welcome field needs a default")
    return _KwOnly(base.__name__, (base,), ns, tag=base.__struct_config__.tag)


class Registry:
    """The message types of one node (core + its features), both directions."""

    def __init__(self, messages: Iterable[type[_Message]]) -> None:
        self.client: dict[str, type[ClientMessage]] = {}
        self.server: dict[str, type[ServerMessage]] = {}
        self.welcome_fields: list[type[WelcomeFields]] = []
        for cls in messages:
            if issubclass(cls, WelcomeFields):
                self.welcome_fields.append(cls)
                continue
            table: dict[str, Any] = self.client if issubclass(cls, ClientMessage) \
                else self.server
            tag = cls.__struct_config__.tag
            if not isinstance(tag, str):
                raise TypeError(f"{cls.__name__} has no message tag")
            if tag in table and table[tag] is not cls:
                raise ValueError(f"message type {tag!r} defined twice")
            table[tag] = cls
        if self.welcome_fields and "welcome" in self.server:
            self.server["welcome"] = _extend(self.server["welcome"], self.welcome_fields)
        self._decoder = _decoder_of(tuple(self.client.values()))
        self._outgoing = _decoder_of(tuple(self.server.values()))
        self.specs: dict[str, MessageSpec] = {t: spec_of(c) for t, c in self.client.items()}

    def __contains__(self, msg_type: str) -> bool:
        return msg_type in self.client

    # client -> server
    def decode(self, raw: str | bytes) -> ClientMessage:
        """The typed message of a frame (size and depth already checked), or
        ClassroomError: ``bad_json`` / ``bad_message`` / ``unknown_type`` (with ``ref``)."""
        if self._decoder is None:
            raise ClassroomError(ErrorCode.UNKNOWN_TYPE, "no message types")
        try:
            return self._decoder.decode(raw)
        except msgspec.ValidationError as exc:  # (a subclass of DecodeError)
            raise self._explain(raw, str(exc)) from None
        except (msgspec.DecodeError, RecursionError):
            raise ClassroomError(ErrorCode.BAD_JSON, "not valid JSON") from None

    def _explain(self, raw: str | bytes, problem: str) -> ClassroomError:
        """The error for a frame the typed decoder refused (the slow path: errors only).
        The contract's JSON refusals (big ints, 1e400, depth) come first, as bad_json."""
        from signaling.protocol import decode_json  # raises bad_json

        data = decode_json(raw)
        if not isinstance(data, dict):
            return ClassroomError(ErrorCode.BAD_JSON, "message must be a JSON object")
        msg_type = data.get("type")
        if not isinstance(msg_type, str):
            return ClassroomError(ErrorCode.BAD_MESSAGE, "message has no string 'type'")
        cls = self.client.get(msg_type)
        if cls is None:
            return with_ref(ClassroomError(ErrorCode.UNKNOWN_TYPE,
                                           f"unknown message type {msg_type[:40]!r}"),
                            msg_type, None)
        at = _AT.search(problem)
        code = cls.field_errors.get(at.group(1), ErrorCode.BAD_MESSAGE) if at \
            else ErrorCode.BAD_MESSAGE
        purpose = data.get("purpose")
        return with_ref(ClassroomError(code, f"{msg_type}: {problem}"), msg_type,
                        purpose if isinstance(purpose, str) else None)

    # server -> client
    def check_outgoing(self, message: dict[str, Any]) -> str | None:
        """None when ``message`` matches its declared server type, else the problem."""
        msg_type = message.get("type")
        if msg_type not in self.server:
            return f"undeclared server message type {msg_type!r}"
        try:
            msgspec.convert(message, self.server[msg_type])
        except msgspec.ValidationError as exc:
            return str(exc)
        return None

    def decode_outgoing(self, raw: str | bytes) -> ServerMessage:
        """A frame the server sent, as its typed message (tests and headless clients)."""
        assert self._outgoing is not None
        return self._outgoing.decode(raw)


def with_ref(err: ClassroomError, msg_type: str, purpose: str | None) -> ClassroomError:
    """Mark ``err`` as the answer to a message of ``msg_type`` (its ``ref``)."""
    err.ref = msg_type[:64]  # type: ignore[attr-defined]
    err.purpose = purpose  # type: ignore[attr-defined]
    return err


def annotation_doc(tp: Any) -> str:
    """The description of an ``Annotated`` type, if any (docs)."""
    if get_origin(tp) is Annotated:
        for meta in get_args(tp)[1:]:
            if isinstance(meta, Meta) and meta.description:
                return meta.description
    return ""


def legacy_messages(schemas: dict[str, MessageSpec]) -> tuple[type[ClientMessage], ...]:
    """Typed messages made from an old ``{type: MessageSpec(roles, {name: FieldSpec})}``
    table, for a feature not yet converted (declare classes instead: see the top)."""
    out = []
    for tag, spec in schemas.items():
        ns: dict[str, Any] = {"__annotations__": {}, "roles": spec.roles,
                              "__module__": __name__}
        for name, fs in spec.fields.items():
            kinds = fs.kind if isinstance(fs.kind, tuple) else (fs.kind,)
            options: list[Any] = []
            for kind in kinds:
                if fs.choices is not None:
                    options.append(Literal[tuple(fs.choices)])  # type: ignore[misc]
                    break
                if kind is int:
                    options.append(Int)
                elif kind is str:
                    options.append(Str[fs.max_len] if fs.max_len is not None else str)
                elif kind is list:
                    options.append(list[Any])
                elif kind is dict:
                    options.append(dict[str, Any])
                else:
                    options.append(kind)
            tp: Any = Union[tuple(options)] if len(options) > 1 else options[0]  # noqa: UP007
            if fs.required:
                ns["__annotations__"][name] = tp
            else:
                ns["__annotations__"][name] = tp | None
                ns[name] = None
        ns["__annotations__"]["roles"] = ClassVar[frozenset[Role]]
        out.append(_KwOnly("Legacy_" + tag.replace("-", "_"), (ClientMessage,), ns, tag=tag))
    return tuple(out)


def feature_messages(feature: Any) -> tuple[type[_Message], ...]:
    """The message types a feature declares (``messages``; an old ``schemas`` table too)."""
    declared = tuple(getattr(feature, "messages", ()) or ())
    legacy = getattr(feature, "schemas", None)
    return declared + (legacy_messages(legacy) if legacy else ())
