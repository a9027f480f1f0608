"""Origin -> edge cascade between nodes: the link a node opens to a lesson's origin.

A classroom may connect to any node. A node whose relay has classrooms of a lesson but no
teacher's media for it, while another live node holds the lesson's origin (Redis,
signaling/nodes.py), becomes an **edge**: it opens one WebSocket per lesson to the origin
(``GET /cascade/link/{lesson}`` on the origin's own address, ``link_url`` in its node
record), says which lines its classrooms use (``want``) and passes their keyframe requests
up (``pli``); the origin sends those lines' packets as binary frames
(media_relay/cascade.py), as encoded once, and its state (share, publisher, stage). Nothing
is decoded or encoded on an edge. The other way, the edge announces its classrooms' uplinks
(``uplinks``) and sends those the origin asks for (``uplinks_want``: what the teacher's
grid shows and the classroom on stage) as binary frames (media_relay/cascade_uplinks.py).

The link is authenticated both ways with the district's shared secret (the one tokens
are signed with): the edge sends ``X-Cascade-Auth: node.ts.nonce.mac`` (HMAC-SHA256 over
the lesson, the node id, the time and the nonce; refused when older than 60 s, when the
node has no live record, or when the MAC is wrong: a forged link gets 403 before any
media), the origin's first message is its proof (its MAC of the nonce), which the edge
checks before it uses a frame. The link runs on the node's HTTP port: over TLS when the
node serves https (docs/cascade.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSCloseCode, web

from media_relay.cascade import EdgeLink, Line

from . import authz, metrics
from .auth import Claims
from .features import Feature
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .app import Node
    from .nodes import NodesFeature

logger = logging.getLogger(__name__)

AUTH_HEADER = "X-Cascade-Auth"
MAX_SKEW = 60.0
"""Seconds a link's signed hello stays valid."""
SCAN = 0.5
"""Seconds between two looks for lessons this node should pull."""
IDLE_CLOSE = 5.0
"""Seconds a pull outlives the last local classroom of its lesson."""
RETRY = 0.5
"""Seconds between two attempts to reach an origin."""
LINK_BUFFER = 8 * 1024 * 1024
"""Bytes an origin lets wait in the socket for one slow edge before it drops the link (the
edge re-pulls from a keyframe)."""
UP_QUEUE = 1000
"""Uplink frames an edge queues for a slow origin link before it drops them."""
TICK = 0.1
"""Seconds between two looks at what each side wants of the other (demand, uplinks)."""
MAX_LINK_MESSAGE = 1024 * 1024
"""Bytes of one message an origin accepts from an edge (an uplink's keyframe)."""


def binary_frame(payload: bytes) -> bytes:
    """RFC 6455 5.2: one final, unmasked binary frame (server to client). The origin
    writes media frames straight to the socket from the fan-out (no task hop per frame)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 127, n)
    return head + payload


def sign(secret: str, *parts: str) -> str:
    message = "|".join(("cascade",) + parts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def auth_header(secret: str, node_id: str, lesson_id: str, now: float | None = None,
                nonce: str | None = None) -> tuple[str, str]:
    """The edge's signed hello for one lesson (the header value and its nonce)."""
    ts = str(int(now if now is not None else time.time()))
    nonce = nonce or secrets.token_hex(12)
    return ".".join((node_id, ts, nonce, sign(secret, "edge", lesson_id, node_id, ts,
                                              nonce))), nonce


def check_auth(secret: str, value: str, lesson_id: str, now: float | None = None
               ) -> tuple[str, str]:
    """The edge's node id and nonce from its hello; ``ValueError`` when it is not genuine."""
    try:
        node_id, ts, nonce, mac = value.rsplit(".", 3)
        age = abs((now if now is not None else time.time()) - int(ts))
    except ValueError:
        raise ValueError("malformed cascade hello") from None
    if age > MAX_SKEW:
        raise ValueError("stale cascade hello")
    if not hmac.compare_digest(mac, sign(secret, "edge", lesson_id, node_id, ts, nonce)):
        raise ValueError("bad cascade signature")
    return node_id, nonce


async def _until_reset(ws: web.WebSocketResponse) -> AsyncIterator[aiohttp.WSMessage]:
    """The link's messages until it closes, also when it is reset under a read (aiohttp
    raises from the pong it answers a ping with): an edge that went is not an error."""
    try:
        async for msg in ws:
            yield msg
    except ConnectionResetError:
        return


class Pull:
    """This node's pull of one lesson from its origin (one task, re-pulls on a break)."""

    def __init__(self, feature: CascadeFeature, lesson_id: str) -> None:
        self.feature = feature
        self.lesson_id = lesson_id
        node = feature.node
        assert node is not None
        self.edge: EdgeLink = node.relay.edge_link(lesson_id, self._pli_upstream,
                                                   self._send_up)
        self.origin: str | None = None
        self.connected = False
        self.idle_since: float | None = None
        self.links = 0
        self.up_dropped = 0
        self._record: dict[str, Any] | None = None
        """The origin's node record at the last pull (used while Redis is away)."""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outbox: deque[str | bytes] = deque()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name=f"cascade-pull-{lesson_id}")

    def _pli_upstream(self, line: Line) -> None:
        self._outbox.append(json.dumps({"pli": list(line)}))
        self._wake.set()

    def _send_up(self, frame: bytes) -> None:
        """One of our classrooms' uplink frames the origin wants (dropped while no link
        or when the link cannot keep up: the origin's viewers wait for a keyframe)."""
        if self._ws is None or len(self._outbox) >= UP_QUEUE:
            self.up_dropped += 1
            return
        self._outbox.append(frame)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._pull_once()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, StoreUnavailable, ValueError) as exc:
                logger.info("cascade link down", extra={"lesson": self.lesson_id,
                                                         "origin": self.origin,
                                                         "error": str(exc)[:200]})
            except Exception:  # noqa: BLE001 - a pull must outlive one bad link
                logger.exception("cascade pull")
            self.connected = False
            self.feature.set_remote_media(self.lesson_id, False)
            await asyncio.sleep(RETRY)

    async def _pull_once(self) -> None:
        feature = self.feature
        node = feature.node
        assert node is not None and feature.nodes.board is not None
        board = feature.nodes.board
        me = node.config.node_id
        try:
            origin = await board.origin(self.lesson_id)
            record = None if origin is None or origin == me else next(
                (r for r in await board.nodes() if r["id"] == origin), None)
        except StoreUnavailable:
            # Redis is away: the link broke meanwhile; pull again from the origin we knew
            if self._record is None:
                raise
            origin, record = self._record["id"], self._record
        if origin is None or origin == me:
            self.origin = None
            return
        if record is None:
            return
        self.origin = origin
        self._record = record
        url = record.get("link_url") or record["http_url"]
        value, nonce = auth_header(node.config.secret, me, self.lesson_id)
        link_url = url.rstrip("/") + f"/cascade/link/{self.lesson_id}"
        async with feature.http.ws_connect(
                link_url, headers={AUTH_HEADER: value}, heartbeat=5.0, ssl=False,
                max_msg_size=8 * 1024 * 1024, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)
        ) as ws:
            first = await ws.receive(timeout=5.0)
            proof = json.loads(first.data).get("proof", "") \
                if first.type == aiohttp.WSMsgType.TEXT else ""
            if not hmac.compare_digest(str(proof), sign(node.config.secret, "origin",
                                                        self.lesson_id, nonce)):
                raise ValueError("origin did not prove the shared secret")
            self._outbox.clear()
            self._ws = ws
            self.links += 1
            metrics.CASCADE_LINKS_MADE.inc()
            self.edge.new_link()
            self.connected = True
            logger.info("cascade link up", extra={"lesson": self.lesson_id, "origin": origin})
            sender = asyncio.get_running_loop().create_task(self._send_loop(ws))
            metrics.CASCADE_LINKS.labels(role="edge").inc()
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        self.edge.deliver(msg.data)
                        feature.set_remote_media(self.lesson_id, True)
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        self._on_state(json.loads(msg.data))
                    else:
                        break
            finally:
                metrics.CASCADE_LINKS.labels(role="edge").dec()
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
                self._ws = None

    def _on_state(self, state: dict[str, Any]) -> None:
        edge = self.edge
        if "share" in state:
            edge.set_share_active(bool(state["share"]))
        if state.get("publisher") is False:
            self.feature.set_remote_media(self.lesson_id, False)
        if "stage" in state:
            edge.set_stage_state(bool(state["stage"]), state.get("stage_size"))
        if isinstance(state.get("uplinks_want"), dict):
            edge.want_uplinks(state["uplinks_want"])
        if "uplink_pli" in state:
            edge.uplink_keyframe(state["uplink_pli"])

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """What our classrooms want (lines, keyframes) and our uplinks, to the origin."""
        sent: list[Line] | None = None
        announced: list[dict[str, Any]] | None = None
        next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK
                demand = self.edge.demand()
                if demand != sent:
                    await ws.send_str(json.dumps({"want": [list(line) for line in demand]}))
                    sent = demand
                uplinks = self.edge.announce_uplinks()
                if uplinks != announced:
                    await ws.send_str(json.dumps({"uplinks": uplinks}))
                    announced = uplinks
                self.edge.flush_keyframes()
            self._wake.clear()
            outbox = self._outbox
            while outbox:
                item = outbox.popleft()
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_str(item)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - time.monotonic()))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.edge.close()
        self.feature.set_remote_media(self.lesson_id, False)

    def stats(self) -> dict:
        return {"origin": self.origin, "connected": self.connected, "links": self.links,
                "uplink_frames_dropped": self.up_dropped, **self.edge.stats()}


class CascadeFeature(Feature):
    """Pulls lessons whose origin is another node; serves this node's lessons to edges."""

    name = "cascade"

    def __init__(self, nodes: NodesFeature, scan: float = SCAN) -> None:
        self.nodes = nodes
        self.scan = scan
        self.node: Node | None = None
        self.pulls: dict[str, Pull] = {}
        self.serving: dict[int, Any] = {}
        """Origin links open to edges (by id)."""
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]
        self._task: asyncio.Task[None] | None = None

    async def start(self, node: Node) -> None:
        self.node = node
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(connect=2.0))
        self._task = asyncio.get_running_loop().create_task(self._scan_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pull in list(self.pulls.values()):
            await pull.close()
        self.pulls.clear()
        if self.http is not None:
            await self.http.close()

    def pulling(self, lesson_id: str) -> bool:
        """This node pulls the lesson from another node (an edge of it) over a live link."""
        pull = self.pulls.get(lesson_id)
        return pull is not None and pull.connected

    def set_remote_media(self, lesson_id: str, active: bool) -> None:
        """The origin's media reaches this node's classrooms (or stopped reaching them)."""
        assert self.node is not None
        self.node.set_remote_media(lesson_id, active)

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.scan)
            try:
                await self.rescan()
            except Exception:  # noqa: BLE001 - the scan must outlive one bad pass
                logger.exception("cascade scan")

    async def rescan(self) -> None:
        """Start a pull for each lesson this node should pull, end the idle ones."""
        assert self.node is not None
        if self.nodes.board is None or self.nodes.board._link is None:  # noqa: SLF001
            return  # one node: nothing to pull from
        wanted = set(self.node.relay.pulled_lessons())
        published = self.node.published_lessons()
        now = time.monotonic()
        for lesson_id in sorted(wanted - set(self.pulls)):
            self.pulls[lesson_id] = Pull(self, lesson_id)
        for lesson_id, pull in list(self.pulls.items()):
            if lesson_id in wanted:
                pull.idle_since = None
            elif lesson_id in published:
                # this node is the origin now: a pull left open would bring the old
                # origin's media (or our own, looped through it) back in
                del self.pulls[lesson_id]
                await pull.close()
            elif pull.idle_since is None:
                pull.idle_since = now
            elif now - pull.idle_since >= IDLE_CLOSE:
                del self.pulls[lesson_id]
                await pull.close()

    # ---- the origin's side -------------------------------------------------------------
    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        feature = self

        @authz.public("GET /cascade/link/{lesson}")
        async def link(request: web.Request) -> web.StreamResponse:
            node = request.app[node_key]
            lesson_id = request.match_info["lesson"]
            try:
                edge_id, nonce = check_auth(node.config.secret,
                                            request.headers.get(AUTH_HEADER, ""), lesson_id)
                if feature.nodes.board is None:
                    raise ValueError("no node board")
                try:
                    live = {r["id"] for r in await feature.nodes.board.nodes()}
                except StoreUnavailable:
                    live = {edge_id}  # Redis away: the fresh MAC alone proves a district node
                    logger.warning("cascade link accepted without Redis",
                                   extra={"lesson": lesson_id, "edge": edge_id})
                if edge_id not in live:
                    raise ValueError("unknown node")
                if feature.pulling(lesson_id):
                    raise ValueError("this node is an edge of the lesson, not its origin")
            except ValueError as exc:
                metrics.CASCADE_LINKS_REFUSED.inc()
                logger.warning("cascade link refused", extra={"lesson": lesson_id,
                                                              "remote": request.remote,
                                                              "reason": str(exc)})
                return web.json_response({"error": {"code": "forbidden",
                                                    "message": "not a node of this district"}},
                                         status=403)
            ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=MAX_LINK_MESSAGE)
            await ws.prepare(request)
            await ws.send_str(json.dumps({"proof": sign(node.config.secret, "origin",
                                                        lesson_id, nonce)}))
            await feature.serve_link(node, ws, lesson_id, edge_id, request.transport)
            return ws

        app.router.add_get("/cascade/link/{lesson}", link)

        @authz.guard("GET /api/cascade", lambda request: request.app[node_key].config.secret)
        async def cascade_stats(request: web.Request, claims: Claims) -> web.Response:
            stats = feature.stats()  # the lessons the token may see ('*': all)
            return web.json_response({
                "pulls": {lid: p for lid, p in stats["pulls"].items()
                          if authz.in_lesson(claims, lid)},
                "serving": [o for o in stats["serving"] if authz.in_lesson(claims, o["lesson"])]})

        app.router.add_get("/api/cascade", cascade_stats)

    async def serve_link(self, node: Node, ws: web.WebSocketResponse, lesson_id: str,
                         edge_id: str, transport: asyncio.BaseTransport | None) -> None:
        """One edge's pull: attach the lines it wants, send their frames until it goes.

        Media frames are written to the socket as the fan-out hands them over (each write
        is one whole WebSocket frame; aiohttp's own writes are whole frames too, so they
        never interleave); the state and keyframe requests go through aiohttp."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        closing = False

        def send(frame: bytes) -> None:
            nonlocal closing
            if closing or not isinstance(transport, asyncio.WriteTransport) \
                    or transport.is_closing():
                return
            if transport.get_write_buffer_size() > LINK_BUFFER:
                closing = True  # a stuck edge: drop it, it re-pulls from a keyframe
                logger.warning("cascade edge too slow", extra={"lesson": lesson_id,
                                                               "edge": edge_id})
                asyncio.ensure_future(ws.close(code=1013, message=b"edge too slow"))
                return
            transport.write(binary_frame(frame))

        def send_text(message: dict[str, Any]) -> None:
            queue.put_nowait(json.dumps(message))

        def ask_uplink_keyframe(index: int) -> None:
            # with the demand as it is now: the edge must send the keyframe up, not drop it
            send_text({"uplinks_want": origin.uplink_demand(), "uplink_pli": index})

        origin = node.relay.origin_link(lesson_id, send, ask_uplink_keyframe)
        self.serving[id(origin)] = origin
        logger.info("cascade edge joined", extra={"lesson": lesson_id, "edge": edge_id})

        async def writer() -> None:
            while True:
                await ws.send_str(await queue.get())

        async def watch() -> None:
            state: dict[str, Any] | None = None
            while True:
                if self.pulling(lesson_id):
                    # this node stepped down and pulls the lesson itself: serving on
                    # would send the edge its own media back (a loop between two nodes)
                    logger.info("cascade link closed: not the origin",
                                extra={"lesson": lesson_id, "edge": edge_id})
                    await ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"not the origin")
                    return
                origin.sync()  # a lesson rebuilt (teacher back) gets its lines again
                live, size = origin.stage_state()
                now = {"share": origin.share_active(), "publisher": origin.publishing(),
                       "stage": live, "stage_size": size,
                       "uplinks_want": origin.uplink_demand()}
                if now != state:
                    state = now
                    send_text(now)
                await asyncio.sleep(TICK)

        tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(watch())]
        metrics.CASCADE_LINKS.labels(role="origin").inc()
        try:
            async for msg in _until_reset(ws):
                if msg.type == aiohttp.WSMsgType.BINARY:
                    origin.uplink_frame(msg.data)
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                try:
                    request = json.loads(msg.data)
                    if "want" in request:
                        origin.want(list(request["want"]))
                    elif "pli" in request:
                        origin.keyframe(request["pli"])
                    elif "uplinks" in request:
                        if origin.announce_uplinks(request["uplinks"]):
                            node.remote_uplinks_changed(lesson_id)
                except (ValueError, TypeError, AttributeError) as exc:
                    logger.warning("cascade bad request", extra={"lesson": lesson_id,
                                                                 "edge": edge_id,
                                                                 "error": str(exc)[:200]})
                    break
        finally:
            metrics.CASCADE_LINKS.labels(role="origin").dec()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            had_uplinks = bool(origin.uplinks.by_index)
            origin.close()
            if had_uplinks:
                node.remote_uplinks_changed(lesson_id)
            self.serving.pop(id(origin), None)
            logger.info("cascade edge left", extra={"lesson": lesson_id, "edge": edge_id})

    def stats(self) -> dict:
        return {"pulls": {lid: p.stats() for lid, p in sorted(self.pulls.items())},
                "serving": [o.stats() for o in self.serving.values()]}
