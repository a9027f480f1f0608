"""Nodes on Redis: who is serving, how loaded, and which node is each lesson's origin.

Every node writes its record (id, advertised HTTP and media addresses, load: CPU,
subscribers, publishers, lessons) every ``heartbeat`` seconds with a TTL of ``ttl``: a node
that stops (killed, frozen, cut off) disappears by itself within ``ttl``. A lesson's
**origin** is the node its teacher publishes to; the claim is a compare-and-set
(``SET NX``, or take-over of a claim whose node is gone, in one Lua script), so two nodes
claiming one origin cannot both win, and the holder refreshes it with its heartbeat.
``GET /api/nodes`` (ops/admin) lists both. Without Redis the node is the only one and
the same answers come from memory. Placement, edges and failover build on this
(docs/cascade.md).

Redis keys: ``classroom:node:{id}`` (JSON, PX ttl), ``classroom:nodes`` (SET of ids, pruned
of expired ones when read), ``classroom:origin:{lesson}`` (node id, PX ttl),
``classroom:carry:{lesson}:{node}`` (the node's relay carries the lesson: its origin or an
edge; PX ttl; placement prefers such a node, so a lesson spills onto few edges). Node
records themselves hold no lesson ids (``GET /api/nodes`` shows them to any ops token).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from . import authz
from .auth import Claims
from .features import Feature
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .app import Node

logger = logging.getLogger(__name__)

HEARTBEAT = 2.0
"""Seconds between a node's record writes."""
TTL = 6.0
"""Seconds a record (and an origin claim) lives without a heartbeat: three missed beats."""

_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] or redis.call('EXISTS', KEYS[2] .. cur) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return cur
"""
"""Claim an origin: free, already ours, or held by a node whose record expired."""


class CpuMeter:
    """This process's CPU use (cores) between two reads: what placement compares."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        span = wall - self._wall
        used = (cpu - self._cpu) / span if span > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        return round(used, 3)


class NodeBoard:
    """The node records and origin claims (memory: this node only; Redis: shared)."""

    def __init__(self, redis_url: str | None, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._link = None
        self._memory: dict[str, tuple[float, dict[str, Any]]] = {}
        self._origins: dict[str, tuple[float, str]] = {}
        if redis_url:
            from .store.redis import RedisLink

            self._link = RedisLink(redis_url)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()

    async def put(self, record: dict[str, Any]) -> None:
        if self._link is None:
            self._memory[record["id"]] = (time.monotonic() + self.ttl, record)
            return
        r = self._link._redis
        await self._link._call(r.set(f"classroom:node:{record['id']}", json.dumps(record),
                                     px=int(self.ttl * 1000)))
        await self._link._call(r.sadd("classroom:nodes", record["id"]))

    async def remove(self, node_id: str) -> None:
        if self._link is None:
            self._memory.pop(node_id, None)
            return
        r = self._link._redis
        await self._link._call(r.delete(f"classroom:node:{node_id}"))
        await self._link._call(r.srem("classroom:nodes", node_id))

    async def nodes(self) -> list[dict[str, Any]]:
        """Live nodes, by id (expired ones are dropped from the index here)."""
        if self._link is None:
            now = time.monotonic()
            return [rec for _, (until, rec) in sorted(self._memory.items()) if until > now]
        r = self._link._redis
        ids = sorted(v.decode() if isinstance(v, bytes) else v
                     for v in await self._link._call(r.smembers("classroom:nodes")))
        if not ids:
            return []
        raw = await self._link._call(r.mget([f"classroom:node:{i}" for i in ids]))
        gone = [i for i, doc in zip(ids, raw, strict=True) if doc is None]
        if gone:
            await self._link._call(r.srem("classroom:nodes", *gone))
        return [json.loads(doc) for doc in raw if doc is not None]

    async def put_carried(self, node_id: str, lessons: Collection[str]) -> None:
        """Say, until the TTL, which lessons this node's relay carries (one round trip)."""
        if self._link is None or not lessons:
            return  # one node: placement has nowhere else to prefer
        pipe = self._link._redis.pipeline(transaction=False)
        for lesson_id in sorted(lessons):
            pipe.set(f"classroom:carry:{lesson_id}:{node_id}", 1, px=int(self.ttl * 1000))
        await self._link._call(pipe.execute())

    async def carriers(self, lesson_id: str, node_ids: Collection[str]) -> set[str]:
        """Which of these nodes carried the lesson at their last beat."""
        if self._link is None or not node_ids:
            return set()
        ids = sorted(node_ids)
        raw = await self._link._call(self._link._redis.mget(
            [f"classroom:carry:{lesson_id}:{i}" for i in ids]))
        return {i for i, value in zip(ids, raw, strict=True) if value is not None}

    async def claim_origin(self, lesson_id: str, node_id: str) -> str:
        """Make ``node_id`` the lesson's origin unless a live node holds it; the holder."""
        if self._link is None:
            now = time.monotonic()
            until, holder = self._origins.get(lesson_id, (0.0, ""))
            if until <= now or holder == node_id or holder not in self._memory:
                self._origins[lesson_id] = (now + self.ttl, node_id)
                return node_id
            return holder
        r = self._link._redis
        held = await self._link._call(r.eval(_CLAIM, 2, f"classroom:origin:{lesson_id}",
                                             "classroom:node:", node_id,
                                             int(self.ttl * 1000)))
        return held.decode() if isinstance(held, bytes) else str(held)

    async def origin(self, lesson_id: str) -> str | None:
        if self._link is None:
            until, holder = self._origins.get(lesson_id, (0.0, ""))
            return holder if until > time.monotonic() else None
        held = await self._link._call(self._link._redis.get(f"classroom:origin:{lesson_id}"))
        return None if held is None else (held.decode() if isinstance(held, bytes) else held)


class NodesFeature(Feature):
    """Registers this node, keeps its origin claims and answers ``GET /api/nodes``."""

    name = "nodes"

    def __init__(self, heartbeat: float = HEARTBEAT, ttl: float = TTL) -> None:
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.board: NodeBoard | None = None
        self.node: Node | None = None
        self.cpu = CpuMeter()
        self.last_cpu = 0.0
        """Cores this process used over the last beat (placement compares it)."""
        self.started_at = time.time()
        self.origins: dict[str, str] = {}
        """Lesson -> origin node, for the lessons this node publishes (last claim)."""
        self.carried: set[str] = set()
        """Lessons this node's relay held at the last record (published or pulled)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self, node: Node) -> None:
        self.node = node
        self.board = NodeBoard(node.config.redis_url, self.ttl)
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.board is not None and self.node is not None:
            try:
                await self.board.remove(self.node.config.node_id)
            except StoreUnavailable:
                pass  # its record expires by TTL
            await self.board.close()

    def record(self) -> dict[str, Any]:
        """This node's record as the others read it."""
        assert self.node is not None
        cfg = self.node.config
        stats = self.node.relay.stats()
        self.carried = set(stats["lessons"])
        self.last_cpu = self.cpu.read()
        return {
            "id": cfg.node_id,
            "pid": os.getpid(),
            "http_url": cfg.public_url or f"http://{cfg.host}:{cfg.port}",
            "link_url": cfg.link_url or f"http://{cfg.host}:{cfg.port}",
            "media": {"host": cfg.host, "rtc_ports": list(cfg.rtc_ports) if cfg.rtc_ports
                      else None},
            "started_at": self.started_at,
            "seen_at": time.time(),
            "load": {"cpu": self.last_cpu, "subscribers": stats["subscribers"],
                     "publishers": stats["publishers"], "uplinks": stats["uplinks"],
                     "lessons": len(stats["lessons"]),
                     "classrooms": self.node.classroom_sockets()},
            # placement (signaling/placement.py): other nodes redirect to this one only
            # while it has room under its own limits
            "limits": {"max_subscribers": cfg.max_subscribers, "max_cpu": cfg.max_cpu},
        }

    async def beat(self) -> None:
        """Write this node's record and renew the origin of every lesson it publishes."""
        assert self.board is not None and self.node is not None
        await self.board.put(self.record())
        me = self.node.config.node_id
        await self.board.put_carried(me, self.carried)
        for lesson_id in sorted(self.node.published_lessons()):
            self._claimed(lesson_id, await self.board.claim_origin(lesson_id, me))
        for lesson_id in set(self.origins) - self.node.published_lessons():
            del self.origins[lesson_id]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.beat()
            except StoreUnavailable as exc:  # Redis gone: lessons go on, records lapse
                logger.warning("node heartbeat failed", extra={"error": str(exc)})
            except Exception:  # noqa: BLE001 - the heartbeat must outlive one bad beat
                logger.exception("node heartbeat")

    async def media_started(self, session: Any, purpose: str) -> None:
        """A teacher's media arrives here: claim the lesson's origin at once."""
        if purpose == "publish" and self.board is not None and self.node is not None:
            try:
                holder = await self.board.claim_origin(session.lesson_id,
                                                       self.node.config.node_id)
            except StoreUnavailable:
                return  # the next heartbeat claims it
            self._claimed(session.lesson_id, holder)

    def _claimed(self, lesson_id: str, holder: str) -> None:
        """The answer to this node's claim of a lesson it publishes. A claim this node held
        and now another live node holds was taken over while this node could not renew it
        (frozen, cut off from Redis past the TTL): the district moved the lesson on, with
        the teacher's media, to the holder. This node does not fight back (it could not
        win the compare-and-set anyway) and stops being an origin of it: the teacher
        sockets publishing here are closed (their media is stale; a page that is still
        there reconnects), so the relay has no publisher and the cascade pulls the lesson
        from the holder as on any edge (docs/cascade.md, "Faults")."""
        assert self.node is not None
        me = self.node.config.node_id
        lost = holder != me and self.origins.get(lesson_id) == me
        if self.origins.get(lesson_id) != holder:
            log = logger.warning if lost else logger.info
            log("origin claim lost" if lost else "origin",
                extra={"lesson": lesson_id, "origin": holder, "node": me})
        self.origins[lesson_id] = holder
        if not lost:
            return
        for session in list(self.node.sessions):
            if session.lesson_id == lesson_id and "publish" in session.media:
                self.node.spawn(self._step_down(session))

    async def _step_down(self, session: Any) -> None:
        """Drop a stale publisher at once (its socket's closing handshake may wait on a
        page that is gone), then close its socket."""
        from .handlers import relay_peer_id

        assert self.node is not None
        await self.node.relay.remove_peer(relay_peer_id(session.peer_id, "publish"))
        if not session.ws.closed:
            await session.ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"origin moved")

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        feature = self

        @authz.guard("GET /api/nodes", lambda request: request.app[node_key].config.secret)
        async def list_nodes(request: web.Request, claims: Claims) -> web.Response:
            assert feature.board is not None
            nodes = await feature.board.nodes()
            lessons = {lsn.id for lsn in await request.app[node_key].hub.store.list_lessons()
                       if lsn.state != "ended" and authz.in_lesson(claims, lsn.id)}
            origins = {}
            for lesson_id in sorted(lessons):
                holder = await feature.board.origin(lesson_id)
                if holder is not None:
                    origins[lesson_id] = holder
            return web.json_response({"nodes": nodes, "origins": origins,
                                      "heartbeat": feature.heartbeat, "ttl": feature.ttl})

        app.router.add_get("/api/nodes", list_nodes)
