"""Generate docs/protocol.md and classroom_web/static/protocol.schema.json from the code.

The message types (signaling/messages/, each feature's), the authorization table
(signaling/authz.py: who may send what) and the error codes (signaling/errors.py) are the
source; this module only renders them. ``python -m signaling.protocol_docs --write``
rewrites both files, ``--check`` exits 1 when either differs from the code (a test does
the same), no argument prints the Markdown.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any, Union

import msgspec
from msgspec import inspect as mi

from . import authz
from .errors import WHEN, ErrorCode
from .messages import core
from .messages.base import (
    MAX_JSON_INT,
    Body,
    ClientMessage,
    Registry,
    ServerMessage,
    WelcomeFields,
    feature_messages,
)
from .protocol import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"
SCHEMA = ROOT / "classroom_web" / "static" / "protocol.schema.json"


# --- what the node runs --------------------------------------------------------------------
def groups() -> list[tuple[str, tuple[type, ...]]]:
    """``(title, message types)``: the core, then each default feature's, in node order."""
    from .app import default_features
    from .config import Config

    out: list[tuple[str, tuple[type, ...]]] = [("core", core.MESSAGES)]
    for feature in default_features(Config(secret="docs", recording=True)):
        out.append((feature.name, feature_messages(feature)))
    return out


def _all() -> list[type]:
    return [cls for _, types in groups() for cls in types]


def registry() -> Registry:
    """The node's message types: ``welcome`` with every feature's fields."""
    return Registry(_all())


# --- reading the classes --------------------------------------------------------------------
@cache
def _attribute_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}``: the string literal under each annotated field."""
    out: dict[str, str] = {}
    for source in getattr(cls, "sources", ()):  # a welcome extended by features
        out.update(_attribute_docs(source))
    for klass in reversed(cls.__mro__):
        if klass.__module__ in ("builtins", "msgspec") or klass.__module__.startswith("msgspec"):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:] + [None], strict=True):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    own = cls.__dict__.get("__doc__")
    if not own:
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value == MAX_JSON_INT:
        return "2^53-1"
    if value == -MAX_JSON_INT:
        return "-(2^53-1)"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _range(t: Any) -> str:
    lo = f"{_num(t.ge)} ≤ " if t.ge is not None else (f"{_num(t.gt)} < " if t.gt is not None
                                                       else "")
    hi = f" ≤ {_num(t.le)}" if t.le is not None else (f" < {_num(t.lt)}" if t.lt is not None
                                                      else "")
    return f"{lo}x{hi}" if lo or hi else ""


def _length(t: Any, unit: str) -> str:
    lo, hi = t.min_length, t.max_length
    if lo and hi is not None:
        return f"{lo}-{_num(hi)} {unit}"
    if hi is not None:
        return f"≤ {_num(hi)} {unit}"
    if lo:
        return f"≥ {lo} {unit}"
    return ""


def render(t: Any, bodies: set[type]) -> str:
    """A type as the docs write it, limits included; nested Structs are linked."""
    if isinstance(t, mi.Metadata):
        return render(t.type, bodies)
    if isinstance(t, mi.UnionType):
        return " \\| ".join(render(x, bodies) for x in t.types)
    if isinstance(t, mi.LiteralType):
        return " \\| ".join(f'`{json.dumps(v)}`' for v in t.values)
    if isinstance(t, mi.StrType):
        limits = ", ".join(x for x in (_length(t, "chars"),
                                       f"`{t.pattern}`" if t.pattern else "") if x)
        return f"string ({limits})" if limits else "string"
    if isinstance(t, mi.IntType):
        r = _range(t)
        return f"integer ({r})" if r else "integer"
    if isinstance(t, mi.FloatType):
        r = _range(t)
        return f"number ({r})" if r else "number"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.AnyType):
        return "any JSON"
    if isinstance(t, mi.ListType):
        n = _length(t, "items")
        return f"[{render(t.item_type, bodies)}]" + (f" ({n})" if n else "")
    if isinstance(t, mi.DictType):
        n = _length(t, "entries")
        return f"{{{render(t.key_type, bodies)}: {render(t.value_type, bodies)}}}" + (
            f" ({n})" if n else "")
    if isinstance(t, mi.StructType):
        bodies.add(t.cls)
        tag = t.cls.__struct_config__.tag
        name = t.cls.__name__
        return f"[{name}](#{name.lower()})" + (f" (`type: {tag}`)" if tag else "")
    return type(t).__name__


def _meta_doc(t: Any) -> str:
    while isinstance(t, mi.UnionType) and len(t.types) >= 1:
        named = [x for x in t.types if isinstance(x, mi.Metadata)]
        if not named:
            return ""
        t = named[0]
    if isinstance(t, mi.Metadata):
        return str((t.extra_json_schema or {}).get("description", "")) or _meta_doc(t.type)
    return ""


def _fields_table(cls: type, bodies: set[type], client: bool) -> list[str]:
    info = mi.type_info(cls)
    docs = _attribute_docs(cls)
    rows = []
    for f in info.fields:
        doc = docs.get(f.name) or _meta_doc(f.type)
        need = "yes" if f.required else ("no" if client else "if set")
        rows.append(f"| `{f.encode_name}` | {render(f.type, bodies)} | {need} | "
                    f"{doc} |")
    if not rows:
        return ["No fields.", ""]
    return ["| field | type (limits) | required | meaning |", "| --- | --- | --- | --- |",
            *rows, ""]


def who_may_send(msg_type: str) -> str:
    """From the authorization table (the one that is enforced), per purpose for media."""
    rows = [(k, r) for k, r in authz.TABLE.items()
            if k == f"ws {msg_type}" or k.startswith(f"ws {msg_type}:")]
    if not rows:
        return "nobody (no authorization row)"
    if len(rows) == 1 and ":" not in rows[0][0]:
        return authz._roles_text(rows[0][1].roles)
    return "; ".join(f"`{k.split(':', 1)[1]}`: {authz._roles_text(r.roles)}" for k, r in rows)


def _body_section(cls: type, bodies: set[type]) -> list[str]:
    tag_field = cls.__struct_config__.tag_field
    head = [f"### {cls.__name__}", ""]
    summary = _summary(cls)
    if summary:
        head += [summary, ""]
    if tag_field and isinstance(mi.type_info(cls), mi.StructType):
        head += [f"Tagged by `{tag_field}: {json.dumps(cls.__struct_config__.tag)}`"
                 + ("; unknown fields refused" if cls.__struct_config__.forbid_unknown_fields
                    else "") + ".", ""]
    return head + _fields_table(cls, bodies, client=True)


def markdown() -> str:
    bodies: set[type] = set()
    out = [
        "# The WebSocket protocol (`/ws`)",
        "",
        "<!-- Generated by `python -m signaling.protocol_docs --write` from signaling/messages/,",
        "     the features' message types, signaling/authz.py and signaling/errors.py.",
        "     Do not edit: a test fails when this file differs from the code. -->",
        "",
        f"Every frame is a JSON object with a `type`, at most {MAX_MESSAGE_BYTES:,} bytes of",
        "UTF-8 (over: `error too_large`, then close 1009). Numbers are finite, integers within",
        f"±(2^53-1), nesting at most {MAX_JSON_DEPTH} deep, strings without lone surrogates",
        "(else `bad_json`). Each type's fields, types and limits below are the server's",
        "(msgspec Structs); unknown fields are ignored unless a body says otherwise. Who may",
        "send a type is the authorization table's (docs/security.md), checked before anything",
        "else but the frame's size and rate. Every error is an `error` message with `ref`: the",
        "`type` it answers, whenever that was readable. A machine-readable JSON Schema of every",
        "message is served at `/static/protocol.schema.json`.",
        "",
        "Request / reply: each request below names the reply its sender gets; a",
        "*notification* (`ice`, reports) gets none unless it fails. `ping` is answered after",
        "the messages sent before it, so it serves as a barrier.",
        "",
    ]
    node = registry()
    for title, types in groups():
        clients = [c for c in types if issubclass(c, ClientMessage)]
        servers = [node.server[c.__struct_config__.tag] for c in types
                   if issubclass(c, ServerMessage)]
        welcome = [f.encode_name for c in types if issubclass(c, WelcomeFields)
                   for f in mi.type_info(c).fields]
        if not clients and not servers and not welcome:
            continue
        name = "Core" if title == "core" else f"Feature `{title}`"
        out += [f"## {name}", ""]
        if welcome:
            out += ["Adds to [`welcome`](#s-welcome): " + ", ".join(f"`{w}`" for w in welcome)
                    + ".", ""]
        if clients:
            out += ["| client → server | who may send | reply |", "| --- | --- | --- |"]
            for c in clients:
                tag = c.__struct_config__.tag
                out.append(f"| [`{tag}`](#c-{tag}) | {who_may_send(tag)} | "
                           f"{c.reply or 'none'} |")
            out.append("")
        if servers:
            out += ["| server → client | sent to |", "| --- | --- |"]
            for c in servers:
                tag = c.__struct_config__.tag
                out.append(f"| [`{tag}`](#s-{tag}) | {c.sent_to or 'the socket it answers'} |")
            out.append("")
        for c in clients:
            tag = c.__struct_config__.tag
            out += [f'<a id="c-{tag}"></a>', f"### `{tag}` (client → server)", "",
                    _summary(c), "", f"Who: {who_may_send(tag)}. Reply: {c.reply or 'none'}.",
                    ""]
            if c.field_errors:
                out += ["Codes of bad fields: " + ", ".join(
                    f"`{k}` → `{v.value}`" for k, v in c.field_errors.items())
                        + " (other fields: `bad_message`).", ""]
            out += _fields_table(c, bodies, client=True)
        for c in servers:
            tag = c.__struct_config__.tag
            out += [f'<a id="s-{tag}"></a>', f"### `{tag}` (server → client)", "",
                    _summary(c), "", f"Sent to: {c.sent_to or 'the socket it answers'}.", ""]
            out += _fields_table(c, bodies, client=False)
    out += ["## Bodies", "", "Objects nested in the messages above.", ""]
    done: set[type] = set()
    while bodies - done:
        for cls in sorted(bodies - done, key=lambda c: c.__name__):
            done.add(cls)
            if issubclass(cls, (ClientMessage, ServerMessage)) or not issubclass(cls, Body):
                continue
            out += _body_section(cls, bodies)
    out += ["## Error codes", "",
            "`error {code, message, ref}` on the socket; `{\"error\": {code, message}}` with "
            "the HTTP status on the API. Only identity errors (`invalid_token`, "
            "`token_expired`, `wrong_lesson`) and floods close the socket.", "",
            "| code | HTTP | when |", "| --- | --- | --- |"]
    for code in ErrorCode:
        out.append(f"| `{code.value}` | {code.http_status} | {WHEN.get(code, '')} |")
    return "\n".join(out).rstrip("\n") + "\n"


def _structs(types: tuple[type, ...]) -> list[type]:
    """Every Struct class reachable from ``types`` (messages and their bodies)."""
    seen: dict[type, None] = {}
    stack: list[Any] = [mi.type_info(t) for t in types]
    while stack:
        t = stack.pop()
        if isinstance(t, mi.StructType):
            if t.cls in seen:
                continue
            seen[t.cls] = None
            stack.extend(f.type for f in t.fields)
        elif isinstance(t, mi.Metadata):
            stack.append(t.type)
        elif isinstance(t, mi.UnionType):
            stack.extend(t.types)
        elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            stack.append(t.item_type)
        elif isinstance(t, mi.DictType):
            stack.extend((t.key_type, t.value_type))
    return list(seen)


def json_schema() -> dict[str, Any]:
    node = registry()
    clients = tuple(node.client.values())
    servers = tuple(node.server.values())
    (client, server), components = msgspec.json.schema_components(
        [Union[clients], Union[servers]], ref_template="#/$defs/{name}")  # noqa: UP007
    named = {cls.__name__: cls for cls in _structs(clients + servers)}
    for name, component in components.items():
        if "description" in component:
            component["description"] = " ".join(component["description"].split())
        cls = named.get(name)
        docs = _attribute_docs(cls) if cls is not None else {}
        for field, prop in component.get("properties", {}).items():
            if field in docs and "description" not in prop:
                prop["description"] = docs[field]
    components["ClientMessage"] = client
    components["ServerMessage"] = server
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/static/protocol.schema.json",
        "title": "Shared classroom WebSocket messages",
        "description": "Generated by `python -m signaling.protocol_docs --write` from the "
                       "server's message types (docs/protocol.md). ClientMessage: what a page "
                       "may send; ServerMessage: what it receives.",
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": dict(sorted(components.items())),
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def outputs() -> dict[Path, str]:
    return {DOC: markdown(), SCHEMA: schema_text()}


def stale() -> list[Path]:
    """The generated files that differ from what the code generates now."""
    return [path for path, text in outputs().items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        for path, text in outputs().items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if argv == ["--check"]:
        bad = stale()
        for path in bad:
            print(f"{path.relative_to(ROOT)} differs: python -m signaling.protocol_docs --write")
        return 1 if bad else 0
    if argv:
        print(__doc__)
        return 2
    print(markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
