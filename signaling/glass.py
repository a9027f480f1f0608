"""Glass-to-glass latency: the teacher's capture to a classroom's playout (docs/latency.md).

Every few seconds a page (classroom/glass.js) sends ``glass``:

- ``offset_ms``, ``rtt_ms``: its clock minus the server's (``performance.timeOrigin +
  performance.now()`` against ``pong.server_time``), from the ping/pong with the smallest
  round trip; the error of the offset is at most half that round trip.
- a classroom also sends ``samples``: for its camera video and audio receivers,
  ``getSynchronizationSources()``'s newest entry: ``ssrc``, ``rtp`` (RTP timestamp of the
  newest frame delivered to the track) and ``at_ms`` (when, in the page's clock).

The teacher's offset moves the capture times the relay reads from the teacher's RTCP
sender reports (media_relay/capture_clock.py) to the server's clock; the classroom's moves
its playout time. Glass-to-glass = playout - capture, both in the server's clock, observed
in ``classroom_glass_to_glass_seconds{school, kind}`` (never a peer id) and kept per
classroom (the last :data:`KEEP` values) for the teacher console and usage statistics:
``GET /api/lessons/{lesson}/glass`` gives each classroom's p50/p95.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import msgspec
from aiohttp import web
from prometheus_client import Counter, Histogram

from media_relay import capture_clock

from . import authz
from .auth import Claims, Role
from .errors import ClassroomError, ErrorCode
from .features import Feature
from .handlers import relay_peer_id
from .messages import Body, ClientMessage, Meta
from .protocol import Message
from .quality_metrics import SchoolLabels

if TYPE_CHECKING:
    from .app import Node
    from .handlers import Session

GLASS = Histogram(
    "classroom_glass_to_glass_seconds",
    "Teacher's capture to a classroom's playout (frame delivered to the track), by the "
    "classroom's school and kind",
    ["school", "kind"],
    buckets=(0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
             1.5, 2.0, 3.0, 5.0),
)
SAMPLES = Counter(
    "classroom_glass_samples_total",
    "Glass-to-glass samples by outcome (ok, or why one was not counted)", ["result"],
)

KINDS = ("video", "audio")
MIN_INTERVAL = 0.9
"""Seconds between two ``glass`` messages of one socket, at least (else rate_limited): a
page reporting every second (its shortest interval) has 0.1 s of timer slack."""
MAX_SAMPLES = 4
MAX_OFFSET_MS = 86_400_000.0
"""A page clock a day away from the server's is refused (bad_message)."""
MAX_RTT_MS = 10_000.0
MAX_SAMPLE_AGE = 10.0
"""Seconds a sample's playout time may lie in the past (server clock), at most."""
MAX_FUTURE = 1.0
"""Seconds a sample's playout time may lie in the future (clock error), at most."""
MIN_GLASS, MAX_GLASS = -0.05, 10.0
"""Glass-to-glass outside this (seconds) is no measurement: dropped (``absurd``); a value
between MIN_GLASS and 0 (clock error) counts as 0."""
TEACHER_CLOCK_AGE = 120.0
"""Seconds a teacher's offset is used after its last report."""
KEEP = 120
"""Values kept per classroom and kind (the last ~6 minutes at one per 3 s)."""
MAX_CLASSROOMS = 5000
"""Classrooms with kept values on this node at most (the oldest go first)."""


@dataclass
class Clock:
    offset: float
    """Page clock minus server clock, seconds."""
    rtt: float
    at: float
    """time.monotonic() of the report."""


def page_to_server(page_ms: float, offset: float) -> float:
    """A page-clock time (ms) as server time (Unix seconds)."""
    return page_ms / 1000.0 - offset


def glass_seconds(capture_teacher: float, teacher_offset: float, playout_ms: float,
                  classroom_offset: float) -> float:
    """Playout minus capture, both moved to the server's clock (seconds)."""
    return page_to_server(playout_ms, classroom_offset) - (capture_teacher - teacher_offset)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` (0..1) percentile, nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_clock(offset_ms: Any, rtt_ms: Any) -> Clock:
    if not (_number(offset_ms) and abs(offset_ms) <= MAX_OFFSET_MS):
        raise ClassroomError(ErrorCode.BAD_MESSAGE, "glass: offset_ms out of range")
    if not (_number(rtt_ms) and 0 <= rtt_ms <= MAX_RTT_MS):
        raise ClassroomError(ErrorCode.BAD_MESSAGE, "glass: rtt_ms out of range")
    return Clock(offset_ms / 1000.0, rtt_ms / 1000.0, time.monotonic())


def check_samples(samples: Any) -> list[tuple[str, int, int, float]]:
    """``[(kind, ssrc, rtp, at_ms)]``, or bad_message for anything malformed."""
    if samples is None:
        return []
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, f"glass: at most {MAX_SAMPLES} samples")
    out = []
    for sample in samples:
        if not isinstance(sample, dict):
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "glass: a sample is an object")
        kind, ssrc, rtp, at = (sample.get(k) for k in ("kind", "ssrc", "rtp", "at_ms"))
        if kind not in KINDS:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "glass: kind is video or audio")
        for value in (ssrc, rtp):
            if not (isinstance(value, int) and not isinstance(value, bool)
                    and 0 <= value <= 0xFFFFFFFF):
                raise ClassroomError(ErrorCode.BAD_MESSAGE,
                                     "glass: ssrc and rtp are 32-bit unsigned integers")
        if not (_number(at) and at > 0):
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "glass: at_ms is a time")
        out.append((kind, ssrc, rtp, float(at)))
    return out


_U32 = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]


class GlassSample(Body):
    """A receiver's newest ``getSynchronizationSources()`` entry."""

    kind: Literal["video", "audio"]
    ssrc: _U32
    rtp: _U32
    """RTP timestamp of the newest frame delivered to the track."""
    at_ms: Annotated[float, Meta(gt=0)]
    """When it was delivered, in the page's clock (ms)."""


class Glass(ClientMessage, tag="glass"):
    """The page's clock offset and (a classroom) its playout samples, every few seconds."""

    roles: ClassVar = frozenset({Role.TEACHER, Role.CLASSROOM})
    reply: ClassVar = "none (a notification); more than one a second: `error rate_limited`"
    offset_ms: Annotated[float, Meta(ge=-MAX_OFFSET_MS, le=MAX_OFFSET_MS)]
    """The page's clock minus the server's (from its best ping/pong)."""
    rtt_ms: Annotated[float, Meta(ge=0, le=MAX_RTT_MS)]
    """That ping/pong's round trip: the offset's error is at most half of it."""
    samples: Annotated[list[GlassSample], Meta(max_length=MAX_SAMPLES)] | None = None


class GlassFeature(Feature):
    name = "glass"
    messages = (Glass,)

    def __init__(self) -> None:
        self._node: Node | None = None
        self._schools = SchoolLabels()
        """The bounded ``school`` label (as the quality series: 200 schools, then
        ``other``; no claim: ``unknown``)."""
        self._teachers: dict[str, Clock] = {}
        """lesson id -> the teacher page's clock (the publisher's offset)."""
        self._last: dict[str, float] = {}
        """session peer id -> monotonic time of its last glass message (rate limit)."""
        self._seen: dict[tuple[str, str], int] = {}
        """(peer id, kind) -> rtp timestamp of its last sample (a paused track repeats)."""
        self._values: OrderedDict[tuple[str, str], dict[str, deque[float]]] = OrderedDict()
        """(lesson, classroom peer id) -> kind -> last glass-to-glass values (seconds)."""

    async def start(self, node: Node) -> None:
        self._node = node

    async def close(self) -> None:
        self._node = None

    async def welcome(self, session: Session) -> dict[str, Any]:
        return {}

    async def handle(self, session: Session, message: Message) -> None:
        now = time.monotonic()
        last = self._last.get(session.peer_id)
        if last is not None and now - last < MIN_INTERVAL:
            raise ClassroomError(ErrorCode.RATE_LIMITED, "glass: one report a second at most")
        self._last[session.peer_id] = now
        clock = check_clock(message.get("offset_ms"), message.get("rtt_ms"))
        samples = check_samples(msgspec.to_builtins(message.samples)
                                if message.samples is not None else None)
        claims = session.claims
        assert claims is not None
        if claims.role == Role.TEACHER:
            self._teachers[session.lesson_id] = clock
            return
        for kind, ssrc, rtp, at_ms in samples:
            SAMPLES.labels(result=self._sample(session, claims, clock, kind, ssrc, rtp,
                                               at_ms)).inc()

    def _sample(self, session: Session, claims: Claims, clock: Clock, kind: str, ssrc: int,
                rtp: int, at_ms: float) -> str:
        key = (session.peer_id, kind)
        if self._seen.get(key) == rtp:
            return "repeated"
        self._seen[key] = rtp
        playout = page_to_server(at_ms, clock.offset)
        wall = time.time()
        if not wall - MAX_SAMPLE_AGE <= playout <= wall + MAX_FUTURE:
            return "stale"
        teacher = self._teachers.get(session.lesson_id)
        if teacher is None or time.monotonic() - teacher.at > TEACHER_CLOCK_AGE:
            return "no_teacher_clock"
        node = self._node
        if node is None:
            return "unknown_frame"
        capture = capture_clock.capture_for(node.relay, relay_peer_id(session.peer_id,
                                                                      "subscribe"),
                                            kind, ssrc, rtp)
        if capture is None:
            return "unknown_frame"
        value = glass_seconds(capture, teacher.offset, at_ms, clock.offset)
        if not MIN_GLASS <= value <= MAX_GLASS:
            return "absurd"
        value = max(0.0, value)
        GLASS.labels(school=self._schools.label(claims.school), kind=kind).observe(value)
        self._keep(session.lesson_id, session.peer_id, kind, value)
        return "ok"

    def _keep(self, lesson: str, peer_id: str, kind: str, value: float) -> None:
        slot = (lesson, peer_id)
        kinds = self._values.get(slot)
        if kinds is None:
            kinds = self._values[slot] = {}
            while len(self._values) > MAX_CLASSROOMS:
                self._values.popitem(last=False)
        else:
            self._values.move_to_end(slot)
        kinds.setdefault(kind, deque(maxlen=KEEP)).append(value)

    def summary(self, lesson: str) -> dict[str, dict[str, dict[str, Any]]]:
        """Each classroom's ``{kind: {p50_ms, p95_ms, samples}}`` in ``lesson``."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (lesson_id, peer_id), kinds in list(self._values.items()):
            if lesson_id != lesson:
                continue
            out[peer_id] = {}
            for kind, values in kinds.items():
                data = list(values)
                p50, p95 = percentile(data, 0.5), percentile(data, 0.95)
                out[peer_id][kind] = {
                    "p50_ms": round(1000 * p50, 1) if p50 is not None else None,
                    "p95_ms": round(1000 * p95, 1) if p95 is not None else None,
                    "samples": len(data)}
        return out

    async def session_closed(self, session: Session, claims: Claims) -> None:
        self._last.pop(session.peer_id, None)
        for kind in KINDS:
            self._seen.pop((session.peer_id, kind), None)

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        @authz.guard("GET /api/lessons/{lesson}/glass",
                     lambda request: request.app[node_key].config.secret)
        async def glass(request: web.Request, claims: Claims) -> web.Response:
            lesson = request.match_info["lesson"]
            return web.json_response({"lesson": lesson, "classrooms": self.summary(lesson)})

        app.router.add_get("/api/lessons/{lesson}/glass", glass)
