"""Build the aiohttp application: signaling, relay, API and pages in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from media_relay import Relay, RelayConfig, RelayError

from . import api, metrics, ops_metrics
from .config import Config
from .errors import ClassroomError, ErrorCode
from .features import Feature
from .forwarded import ForwardedHeaders, parse_networks
from .handlers import Session, session_peer_id
from .http_guard import body_timeout_middleware, handler_args
from .lessons import LessonHub
from .loop_lag import LOOP_LAG, watch_loop_lag
from .messages import core as core_messages
from .messages.base import ClientMessage, Registry, feature_messages
from .protocol import MessageSpec
from .quality_metrics import QUALITY
from .school.db import SchoolDB, open_school_db
from .store import StoreUnavailable, open_store
from .ws_limits import LimitedWebSocket

logger = logging.getLogger(__name__)
T = TypeVar("T")

NODE_KEY: web.AppKey[Node] = web.AppKey("node")

# RelayError reasons a client is told by their own code; any other is media_failed.
_RELAY_CODES = {
    "bad_sdp": ErrorCode.BAD_SDP,
    "too_many_tracks": ErrorCode.TOO_MANY_TRACKS,
    "uplink_over_cap": ErrorCode.UPLINK_OVER_CAP,
}


class Node:
    """Everything one signaling/relay process holds, with one lifetime."""

    def __init__(self, config: Config, features: list[Feature] | None = None) -> None:
        self.config = config
        self.store = open_store(config.redis_url, presence_ttl=config.presence_ttl,
                                library=config.library)  # lessons survive a restart
        self.school_db: SchoolDB = open_school_db(config)
        """Directory, timetable, devices, usage (signaling/school/db.py)."""
        self.hub = LessonHub(
            self.store, roster_poll=config.roster_poll, on_lesson_ended=self._lesson_ended,
            media_live=self.relay_has_publisher,  # rebuilds a lesson record the store lost
            on_state=self._lesson_state,  # the relay's on-air gate (docs/media.md)
        )
        self.relay = Relay(
            RelayConfig(
                ice_servers=config.ice_servers,
                video_bitrate=config.video_bitrate,
                keyframe_interval=config.keyframe_interval,
                rtc_ports=config.rtc_ports,
                on_air_gate=True,  # classrooms get media only while the lesson is live
            ),
            on_peer_state=self._on_peer_state,
            on_publisher=self._on_publisher,
            on_tier=self._on_tier,
            on_uplink=self._on_uplink,
            on_uplink_violation=self._on_uplink_violation,
        )
        self.sessions_by_relay_id: dict[str, Session] = {}
        self.sessions: set[Session] = set()
        self._publishers: set[str] = set()
        self._remote_media: set[str] = set()
        """Lessons whose teacher's media reaches this node's relay from their origin
        (this node is an edge of them: signaling/cascade.py)."""
        self._background: set[asyncio.Task[Any]] = set()
        self.features: list[Feature] = list(features or [])
        self.feature_for: dict[str, Feature] = {}
        messages = list(core_messages.MESSAGES)
        for feature in self.features:
            for cls in feature_messages(feature):
                messages.append(cls)
                if issubclass(cls, ClientMessage):
                    self.feature_for[cls.__struct_config__.tag] = feature
        self.protocol = Registry(messages)  # a type declared twice: ValueError
        """Every message type of this node, both directions (signaling/messages)."""
        self.schemas: dict[str, MessageSpec] = self.protocol.specs

    async def start(self) -> None:
        await self.school_db.start()
        await self.hub.start()
        for feature in self.features:
            await feature.start(self)

    async def close(self) -> None:
        for session in list(self.sessions):
            await session.ws.close(code=1001, message=b"server shutting down")
        await self.relay.close()
        for feature in reversed(self.features):
            await feature.close()
        await self.hub.close()
        await self.school_db.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def relay_call(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except RelayError as exc:
            code = _RELAY_CODES.get(exc.reason, ErrorCode.MEDIA_FAILED)
            raise ClassroomError(code, str(exc) or code.value) from None

    def _lesson_state(self, lesson_id: str, state: str) -> None:
        """Every lesson state this node learns: classrooms receive media only while
        ``live`` (the gate is in the relay, where packets leave: no page can skip it)."""
        self.relay.set_on_air(lesson_id, state == "live")

    def relay_has_publisher(self, lesson_id: str) -> bool:
        """The teacher's media is in this node's relay: published here or pulled from
        the lesson's origin."""
        return lesson_id in self._publishers or lesson_id in self._remote_media

    def set_remote_media(self, lesson_id: str, active: bool) -> None:
        """An edge's pull of the lesson started or stopped carrying the teacher's media:
        this node's sessions of the lesson are told (``media``), as on an origin."""
        if active == (lesson_id in self._remote_media):
            return
        if active:
            self._remote_media.add(lesson_id)
        else:
            self._remote_media.discard(lesson_id)
        if lesson_id in self._publishers:
            return
        for session in list(self.sessions):
            if session.lesson_id == lesson_id and session.claims is not None:
                self.spawn(session.send({"type": "media", "publisher": active}))

    def classroom_sockets(self) -> int:
        """Classroom sockets welcomed here: what ``--max-subscribers`` counts (a classroom
        counts from its welcome, before its media is answered)."""
        return sum(1 for s in self.sessions
                   if s.claims is not None and s.claims.role.value == "classroom")

    def remote_uplinks_changed(self, lesson_id: str) -> None:
        """An edge's classrooms' uplinks joined or left this origin's lesson: the
        teacher's grid slots may have changed (``uplinks_changed`` on every feature)."""
        for feature in self.features:
            self.spawn(feature.uplinks_changed(lesson_id))

    def published_lessons(self) -> set[str]:
        """Lessons whose teacher media flows into this node's relay (their origin)."""
        return set(self._publishers)

    # relay callbacks (plain functions called from the relay) ---------------------------
    def _on_peer_state(self, lesson_id: str, relay_id: str, state: str) -> None:
        session = self.sessions_by_relay_id.get(relay_id)
        if session is None or session.claims is None:
            return
        purpose = session_peer_id(relay_id)[1]
        own = "publish" if session.claims.role.value == "teacher" else "subscribe"
        if purpose == own:
            self.spawn(session.media_state_changed(state))
        elif purpose == "uplink" and state in ("failed", "closed"):
            for feature in self.features:
                self.spawn(feature.uplink_changed(session, state))
        elif purpose == "grid" and state == "connected":
            for feature in self.features:  # the stage assigns grid slots on connect
                self.spawn(feature.grid_connected(session))

    def _on_uplink(self, lesson_id: str, relay_id: str, active: bool) -> None:
        """A classroom's uplink media started or stopped flowing: its tile's state."""
        session = self.sessions_by_relay_id.get(relay_id)
        if session is None or session.claims is None:
            return
        for feature in self.features:
            self.spawn(feature.uplink_changed(session, "active" if active else "inactive"))

    def _on_uplink_violation(self, lesson_id: str, relay_id: str, code: str) -> None:
        """A classroom sends over its cap: an ``error`` (uplink_over_cap) to it."""
        session = self.sessions_by_relay_id.get(relay_id)
        if session is None or session.claims is None:
            return
        for feature in self.features:
            self.spawn(feature.uplink_violation(session, code))

    def _on_publisher(self, lesson_id: str, active: bool) -> None:
        if active:
            self._publishers.add(lesson_id)
        else:
            self._publishers.discard(lesson_id)
            if lesson_id in self._remote_media:
                return  # a stale local publisher went; the origin's media flows on here
        self.spawn(self.hub.broadcast(lesson_id, {"type": "media", "publisher": active}))

    def _on_tier(self, lesson_id: str, relay_id: str, tier: str, reason: str,
                 direction: str) -> None:
        """A classroom moved to another tier: tell it and the lesson's teachers (on this
        node: the relay that moved it is this node's), with its RTT and loss."""
        session = self.sessions_by_relay_id.get(relay_id)
        if session is None or session.claims is None:
            return
        msg: dict[str, Any] = {"type": "tier", "peer_id": session.peer_id, "tier": tier,
                               "reason": reason, "direction": direction}
        msg.update(self.relay.link_stats(relay_id))
        targets = [session] + [
            s for s in self.sessions
            if s is not session and s.lesson_id == lesson_id and s.claims is not None
            and s.claims.role.value == "teacher"]
        for target in targets:
            self.spawn(target.send(msg))
        self.spawn(session.tier_changed(tier))

    async def _lesson_ended(self, lesson_id: str) -> None:
        await self.relay.close_lesson(lesson_id)
        self._publishers.discard(lesson_id)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    ws = LimitedWebSocket(heartbeat=node.config.ws_heartbeat)
    await ws.prepare(request)
    session = Session(node, ws, remote=request.remote, secure=request.secure)
    node.sessions.add(session)
    metrics.WS_CONNECTIONS.inc()
    try:
        await session.run()
    finally:
        node.sessions.discard(session)
        metrics.WS_CONNECTIONS.dec()
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    up = await node.store.ping()
    metrics.STORE_UP.set(1 if up else 0)
    events = node.store.events_connected
    backend = "redis" if node.config.redis_url else "sqlite"
    body = {"ok": up and events, "store": backend, "store_reachable": up, "events": events}
    up = up and events
    return web.json_response(body, status=200 if up else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    # the pages' quality series render themselves (signaling/quality_metrics.py: fast)
    resp = web.Response(body=generate_latest() + QUALITY.render())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """JSON errors for /api; never a traceback anywhere."""
    try:
        return await handler(request)
    except ClassroomError as err:
        metrics.ERRORS.labels(code=err.code.value).inc()
        return web.json_response({"error": err.to_json()}, status=err.code.http_status)
    except StoreUnavailable:
        # Any route (API, features, pages) during a Redis outage: 503, retry; never internal.
        err = ClassroomError(ErrorCode.STORE_UNAVAILABLE, "lesson store unavailable, retry")
        metrics.ERRORS.labels(code=err.code.value).inc()
        return web.json_response({"error": err.to_json()}, status=err.code.http_status)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            code = ErrorCode.NOT_FOUND if exc.status == 404 else ErrorCode.BAD_MESSAGE
            return web.json_response(
                {"error": {"code": code.value, "message": exc.reason}}, status=exc.status
            )
        raise
    except Exception:
        logger.exception("request failed", extra={"path": request.path})
        err = ClassroomError(ErrorCode.INTERNAL, "internal error")
        return web.json_response({"error": err.to_json()}, status=500)


def default_features(config: Config) -> list[Feature]:
    """The features every node runs (each issue's capability registers here)."""
    from .cascade import CascadeFeature
    from .glass import GlassFeature
    from .nodes import NodesFeature
    from .placement import PlacementFeature
    from .quality import QualityFeature
    from .quiz.feature import QuizFeature
    from .recordings.feature import RecordingFeature
    from .school.devices_api import DevicesFeature
    from .school.directory import DirectoryFeature
    from .school.stats_api import StatsFeature
    from .school.timetable_api import TimetableFeature
    from .school.usage import UsageFeature
    from .stage.feature import StageFeature

    nodes = NodesFeature()
    return [nodes, CascadeFeature(nodes), PlacementFeature(nodes), QuizFeature(),
            StageFeature(), RecordingFeature.from_config(config), QualityFeature(),
            GlassFeature(), DirectoryFeature(), DevicesFeature(),
            TimetableFeature(), UsageFeature(), StatsFeature()]


def build_app(config: Config, features: list[Feature] | None = None) -> web.Application:
    forwarded = ForwardedHeaders(parse_networks(config.trusted_proxies)).middleware()
    app = web.Application(middlewares=[forwarded, error_middleware,
                                       body_timeout_middleware(config.http_body_timeout)],
                          client_max_size=256 * 1024, handler_args=handler_args(config))
    node = Node(config, default_features(config) if features is None else features)
    app[NODE_KEY] = node

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await node.start()
        relay = node.relay

        def observe(lag: float) -> None:
            LOOP_LAG.observe(lag)
            relay.note_loop_lag(lag)

        watcher = asyncio.get_running_loop().create_task(watch_loop_lag(observe=observe),
                                                         name="loop-lag")
        yield
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await node.close()

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(ops_metrics.library_watch(config))  # deploy/prometheus
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    api.add_routes(app, NODE_KEY)
    for feature in node.features:
        feature.add_routes(app, NODE_KEY)
    try:
        from classroom_web.routes import add_routes as add_pages
    except ImportError:  # pages not built yet
        logger.warning("classroom_web not available; pages disabled")
    else:
        add_pages(app)
    return app
