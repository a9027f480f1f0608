"""Placement: a node over its limit sends a new classroom's socket to a node with room.

``classroom serve --max-subscribers N`` and ``--max-cpu F`` are this node's limits (its
node record advertises them, signaling/nodes.py). At ``hello`` of a **classroom** token,
once the token is checked and before any store work, a node that is over a limit (N
classroom sockets already welcomed or being welcomed here; or more than F cores used over
the last heartbeat) answers a typed ``redirect`` (the other node's public base URL, its
``/ws`` URL, its id, the reason) instead of ``welcome`` and closes the socket (1000). The
target is the least-loaded live node with room under its own advertised limits; the page
keeps its token (in its fragment, never in a URL) and says ``hello`` there with
``redirected: 1``. Never redirected: teachers (the node a teacher publishes to becomes the
lesson's origin, wherever it is), students, ops/admin; a hello that says ``redirected`` >= 1
(no loop: the target accepts) or ``reconnect`` (a classroom already placed stays). No node
with room: the socket is accepted here (degrade; a school is never refused), counted in
``classroom_placement_over_limit_total{reason="no_room"}`` and logged.

The redirect's URL never comes from the request: only from a live node record in Redis,
checked by :func:`safe_base` (http/https, a plain host[:port], an optional plain path, no
user info, query, fragment or odd characters), never this node's own public URL (one load
balancer URL for every node would loop), and https only for a wss socket (a secure page
cannot open ws://). docs/cascade.md ("Placement") has the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import Counter

from .auth import Claims, Role
from .features import Feature
from .messages.base import UNSET, ServerMessage, Str, UnsetType, WelcomeFields
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .app import Node
    from .handlers import Session
    from .nodes import NodesFeature
    from .protocol import Message

logger = logging.getLogger(__name__)

REDIRECTS = Counter("classroom_redirects_total",
                    "Classroom sockets this node sent to another node at hello (over its "
                    "limit)", ["reason"])
OVER_LIMIT = Counter("classroom_placement_over_limit_total",
                     "Classroom sockets accepted while this node was over its limit "
                     "(no_room: no live node had room; redirected: sent here by another "
                     "node; reconnect: already placed here)", ["reason"])

FRESH = 1.0
"""Seconds the node list read from Redis is used before a redirect reads it again."""
STALE = 6.0
"""Seconds after which a node list that could not be refreshed is not used at all."""
WARN_EVERY = 10.0
"""Seconds between two "over limit, no node has room" warnings (the metric counts all)."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NETLOC = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(\d{{1,5}}))?$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*$")


def safe_base(url: object) -> str | None:
    """``url`` as a base URL a page may be sent to (``https://host[:port][/path]``, no
    trailing slash), or None: anything else, from a record that is broken or forged."""
    if not isinstance(url, str) or not 0 < len(url) <= 256:
        return None
    if any(not 0x21 <= ord(c) <= 0x7E for c in url) or any(c in url for c in "?#@\\%"):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not url.lower().startswith(parts.scheme):
        return None
    match = _NETLOC.match(parts.netloc)
    if match is None or (match.group(1) and not 0 < int(match.group(1)) < 65536):
        return None
    path = parts.path.rstrip("/")
    if not _PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        return None
    return f"{parts.scheme}://{parts.netloc}{path}"


def ws_url_of(base: str) -> str:
    """The ``/ws`` URL of a :func:`safe_base` base URL."""
    return ("wss" if base.startswith("https:") else "ws") + base[base.index(":"):] + "/ws"


def socket_origin(base: str) -> str:
    """The origin of a base URL's socket (``wss://host:port``), for a page's CSP."""
    parts = urlsplit(base)
    return ("wss" if parts.scheme == "https" else "ws") + "://" + parts.netloc


class Redirect(ServerMessage, tag="redirect"):
    """This node is over its limit: open the socket at `ws_url` instead and say `hello`
    there with `redirected: 1` (same token; the page itself stays where it is)."""

    sent_to: ClassVar = "a classroom's socket at hello, instead of `welcome`, when this " \
                        "node is over its limit and another live node has room; then " \
                        "closed (1000)"
    url: Str[256]
    """The other node's public base URL (`https://host[:port]`)."""
    ws_url: Str[260]
    """Its socket: `url` with ws/wss and `/ws`."""
    node: Str[128]
    """The other node's id (as in `GET /api/nodes`)."""
    reason: Literal["subscribers", "cpu"]
    """Which limit of this node was reached."""


class PlacementWelcome(WelcomeFields):
    fallback_sockets: list[Str[260]] | UnsetType = UNSET
    """Classroom and teacher: the other live nodes' sockets (`wss://host:port/ws`), least
    loaded first. A page whose own node stops answering (two tries) says `hello` at the
    next of these with `redirected: 1` (docs/cascade.md, "Failover"). Absent with one
    node."""


FALLBACK_COUNT = 3
"""Other nodes a welcome names (a page tries them in turn while its own is down)."""


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


class PlacementFeature(Feature):
    """Sends classrooms elsewhere when this node is over ``--max-subscribers``/``--max-cpu``."""

    name = "placement"
    messages = (Redirect, PlacementWelcome)

    def __init__(self, nodes: NodesFeature) -> None:
        self.nodes = nodes
        self.node: Node | None = None
        self._peers: list[dict[str, Any]] = []
        self._peers_at = -STALE  # monotonic time of the last good read
        self._reading: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self._sent: dict[str, tuple[Any, int]] = {}
        """Node id -> (``seen_at`` of its record, redirects sent to it since that beat)."""
        self._admitting: weakref.WeakSet[Session] = weakref.WeakSet()
        """Classroom sockets let in but not yet welcomed (counted against the limit)."""
        self._warned_at = -WARN_EVERY
        self._unwarned = 0

    async def start(self, node: Node) -> None:
        self.node = node
        cfg = node.config
        if cfg.max_subscribers is not None or cfg.max_cpu is not None:
            logger.info("placement limits", extra={"max_subscribers": cfg.max_subscribers,
                                                   "max_cpu": cfg.max_cpu})
        # the node list also feeds the pages' CSP (the other nodes' sockets): keep it fresh
        self._loop = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def close(self) -> None:
        for task in (self._loop, self._reading):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        try:
            from classroom_web.routes import CONNECT_SOURCES
        except ImportError:  # no pages
            return
        app[CONNECT_SOURCES] = self.socket_origins

    # --- the node list ---------------------------------------------------------------------
    async def _refresh_loop(self) -> None:
        while True:
            await self._read_peers()
            await asyncio.sleep(self.nodes.heartbeat)

    async def _read_peers(self) -> None:
        """Read the live node records once (callers at the same moment share the read)."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_once())
        await asyncio.shield(self._reading)

    async def _read_once(self) -> None:
        board = self.nodes.board
        if board is None:
            return
        try:
            self._peers = await board.nodes()
            self._peers_at = time.monotonic()
        except StoreUnavailable as exc:  # placement waits; sockets are accepted here
            logger.warning("placement: node list unavailable", extra={"error": str(exc)})
        except Exception:  # noqa: BLE001 - the loop must outlive one bad read
            logger.exception("placement: node list")

    def _own_base(self) -> str | None:
        assert self.node is not None
        cfg = self.node.config
        return safe_base(cfg.public_url or f"http://{cfg.host}:{cfg.port}")

    def socket_origins(self) -> list[str]:
        """The sockets of the other live nodes a page here may be redirected to (CSP)."""
        return sorted({socket_origin(base) for _, base in self._others()})

    def _others(self, secure: bool = False) -> Iterator[tuple[dict[str, Any], str]]:
        """The other live nodes a page here may be sent to, with their checked base URLs:
        none from a node list older than STALE; never this node (its id, or a record with
        this node's own public URL); https only for a ``secure`` (wss) socket."""
        if self.node is None or time.monotonic() - self._peers_at > STALE:
            return
        own, me = self._own_base(), self.node.config.node_id
        for record in self._peers:
            base = safe_base(record.get("http_url"))
            if (base is None or base == own or record.get("id") == me
                    or (secure and not base.startswith("https:"))):
                continue
            yield record, base

    def fallback_sockets(self, secure: bool) -> list[str]:
        """The other live nodes' ``/ws`` URLs a page here may fail over to, least loaded
        first (the same checks as a redirect's target; room is not asked: a page whose
        node is gone is taken anywhere)."""
        found: list[tuple[float, str]] = []
        for record, base in self._others(secure):
            load = record.get("load") if isinstance(record.get("load"), dict) else {}
            count = _num(load.get("classrooms")) or _num(load.get("subscribers")) or 0.0
            found.append((count, ws_url_of(base)))
        urls = list(dict.fromkeys(url for _, url in sorted(found)))
        return urls[:FALLBACK_COUNT]

    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        if claims is None or claims.role not in (Role.CLASSROOM, Role.TEACHER):
            return {}
        urls = self.fallback_sockets(secure=session.secure)
        return {"fallback_sockets": urls} if urls else {}

    # --- this node -------------------------------------------------------------------------
    def local_count(self) -> int:
        """Classroom sockets here, welcomed or being welcomed."""
        assert self.node is not None
        pending = sum(1 for s in list(self._admitting) if s.claims is None and not s.ws.closed)
        return self.node.classroom_sockets() + pending

    def over_limit(self) -> Literal["subscribers", "cpu"] | None:
        """Which of this node's limits a new classroom would go over, if any."""
        assert self.node is not None
        cfg = self.node.config
        if cfg.max_subscribers is not None and self.local_count() >= cfg.max_subscribers:
            return "subscribers"
        if (cfg.max_cpu is not None and self.nodes.last_cpu >= cfg.max_cpu
                and time.time() - self.nodes.started_at > 1.5 * self.nodes.heartbeat):
            return "cpu"  # (the first beat's figure is the node's own start-up)
        return None

    # --- the decision ----------------------------------------------------------------------
    async def place(self, session: Session, claims: Claims, hello: Message
                    ) -> Redirect | None:
        if claims.role != Role.CLASSROOM or self.node is None:
            return None
        reason = self.over_limit()
        if reason is None:
            self._admitting.add(session)
            return None
        if hello.get("redirected", 0) >= 1 or hello.get("reconnect"):
            OVER_LIMIT.labels(reason="redirected" if hello.get("redirected") else
                              "reconnect").inc()
            self._admitting.add(session)
            return None
        if time.monotonic() - self._peers_at > FRESH:
            await self._read_peers()
        lesson = hello.get("lesson") or claims.lesson
        target = self.choose(secure=session.secure, prefer=await self._carriers(
            lesson if isinstance(lesson, str) and lesson != "*" else None))
        if target is None:
            OVER_LIMIT.labels(reason="no_room").inc()
            self._warn_no_room(reason, claims)
            self._admitting.add(session)
            return None
        base = safe_base(target["http_url"])
        assert base is not None
        REDIRECTS.labels(reason=reason).inc()
        logger.info("redirect", extra={"lesson": hello.get("lesson") or claims.lesson,
                                       "school": claims.school, "to": target["id"],
                                       "reason": reason, "addr": session.remote})
        return Redirect(url=base, ws_url=ws_url_of(base), node=str(target["id"])[:128],
                        reason=reason)

    async def _carriers(self, lesson_id: str | None) -> set[str]:
        """The live nodes that carry this lesson now (none known: Redis away, no lesson)."""
        if lesson_id is None or self.nodes.board is None:
            return set()
        ids = {r["id"] for r in self._peers if isinstance(r.get("id"), str)}
        try:
            return await self.nodes.board.carriers(lesson_id, ids)
        except StoreUnavailable:
            return set()  # the least-loaded node with room, as without a lesson

    def choose(self, secure: bool = False, prefer: set[str] | frozenset[str] = frozenset()
               ) -> dict[str, Any] | None:
        """A live node with room (not this one), or None: one in ``prefer`` (it carries the
        lesson already) first, then the least loaded; counts the redirect against it until
        its next beat."""
        assert self.node is not None
        best: tuple[tuple[int, float, float, float, str], dict[str, Any], Any, int] | None = None
        for record, _ in self._others(secure):
            node_id = record.get("id")
            if not isinstance(node_id, str):
                continue
            load = record.get("load") if isinstance(record.get("load"), dict) else {}
            limits = record.get("limits") if isinstance(record.get("limits"), dict) else {}
            seen = record.get("seen_at")
            sent_seen, sent = self._sent.get(node_id, (None, 0))
            sent = sent if sent_seen == seen else 0
            count = max(_num(load.get("subscribers")) or 0.0,
                        _num(load.get("classrooms")) or 0.0) + sent
            cpu = _num(load.get("cpu")) or 0.0
            max_subs, max_cpu = _num(limits.get("max_subscribers")), _num(limits.get("max_cpu"))
            if (max_subs is not None and count >= max_subs) or \
                    (max_cpu is not None and cpu >= max_cpu):
                continue  # no room
            fill = max(count / max_subs if max_subs else 0.0, cpu / max_cpu if max_cpu else 0.0)
            key = (0 if node_id in prefer else 1, fill, count, cpu, node_id)
            if best is None or key < best[0]:
                best = (key, record, seen, sent)
        if best is None:
            return None
        _, record, seen, sent = best
        self._sent[record["id"]] = (seen, sent + 1)
        return record

    def _warn_no_room(self, reason: str, claims: Claims) -> None:
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY:
            self._unwarned += 1
            return
        assert self.node is not None
        logger.warning("placement: over the limit and no live node has room: accepted here",
                       extra={"reason": reason, "classrooms": self.local_count(),
                              "cpu": self.nodes.last_cpu, "school": claims.school,
                              "max_subscribers": self.node.config.max_subscribers,
                              "max_cpu": self.node.config.max_cpu,
                              "not_logged_since": self._unwarned})
        self._warned_at, self._unwarned = now, 0
