"""Quality as the classroom saw it (docs/quality.md): ``quality`` reports from the pages.

Every page that plays media sends, every 10 s, what its ``getStats()`` counted since the
page loaded (cumulative totals, one ``epoch`` per page load, ``seq`` counting up). This
module checks a report (types and ranges; then the growth since the last accepted report
against the time that passed: no freeze longer than the interval, no more concealed than
played samples, no RTT over 60 s), turns it into deltas, and

* adds them to the ``classroom_client_*`` series (quality_metrics.py: school and role
  labels only, bounded);
* adds them to the lesson's per-classroom summary in the quality store (flushed every
  :data:`FLUSH_INTERVAL` s and when the node closes);
* marks a classroom's tile ``good`` / ``fair`` / ``poor`` (with a reason) and tells the
  lesson's teachers (``quality-mark``) when the mark changes.

Robust to what networks and people do: a lost report is covered by the next (totals, not
deltas); a repeated one (same or older ``seq``) changes nothing; a page reload starts a
new epoch from zero; a socket that reconnects to this node resumes its epoch's baseline;
one that reconnects elsewhere starts a baseline there (that interval is not counted).
At most one report per :data:`MIN_INTERVAL` s per socket: more are ``rate_limited``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from aiohttp import web

from .auth import Claims, Role
from .errors import ClassroomError, ErrorCode
from .features import Feature
from .messages import (
    UNSET,
    ClientMessage,
    Int,
    Num,
    PeerId,
    ServerMessage,
    Str,
    UnsetType,
    WelcomeFields,
)
from .protocol import Message
from .quality_metrics import QUALITY, QualityMetrics
from .quality_store import QualityStore, open_quality_store
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .app import Node
    from .handlers import Session

logger = logging.getLogger(__name__)

REPORT_INTERVAL = 10.0
"""Seconds between a page's reports."""
MIN_INTERVAL = 4.5
"""A socket's reports closer together than this are refused (rate_limited): 'one per ~5 s'."""
FLUSH_INTERVAL = 15.0
"""Seconds between writes of the pending summaries to the quality store."""
MAX_SPAN = 3 * REPORT_INTERVAL
"""Most seconds one report may add to 'connected' and tier time (reports were lost)."""
FIRST_SPAN_MAX = 120.0
"""Longest first interval (page load to first report) a report's growth is judged over."""
SLACK = 2.0
"""Seconds added to the interval when judging growth (timers, clocks, a late report)."""
MAX_RTT_MS = 60_000
MAX_JITTER_MS = 60_000
MAX_TRACKS = 64
MAX_FPS = 120
MAX_FREEZES_PER_S = 10  # Chrome counts a freeze after >= 150 ms without a frame
MAX_SAMPLE_RATE = 96_000
MAX_PACKETS_PER_S = 5_000
BASELINES_MAX = 50_000
BASELINE_TTL = 15 * 60.0
TIERS = ("high", "mid", "low", "audio", "audio-only")
"""Tiers a report may name; ``audio`` (the relay's name) is exported as ``audio-only``."""

_EPOCH = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_COUNT_FIELDS = ("frames_received", "frames_decoded", "freezes", "video_lost",
                 "audio_samples", "audio_concealed", "audio_lost")
_SENDERS = frozenset({Role.TEACHER, Role.CLASSROOM})


class QualityReport(ClientMessage, tag="quality"):
    """What the page's getStats() counted since it loaded; every 10 s (docs/quality.md)."""

    roles: ClassVar = _SENDERS
    reply: ClassVar = "nothing when accepted; `error` bad_message / rate_limited (ref quality)"
    epoch: Str[40]
    """New at each page load (A-Z a-z 0-9 _ -)."""
    seq: Int
    """1 for the page's first report, then +1 per report sent."""
    interval_ms: Num | None = None
    """Milliseconds since the page's previous report (its first: since it loaded)."""
    tier: Str[16] | None = None
    """The page's tier (high, mid, low, audio); null on the teacher console."""
    video_tracks: Int | None = None
    """Inbound video streams now (a teacher's grid has one per slot); default 1."""
    audio_tracks: Int | None = None
    frames_received: Int | None = None
    """Totals since the page loaded (inbound-rtp): framesReceived."""
    frames_decoded: Int | None = None
    freezes: Int | None = None
    """freezeCount."""
    freeze_ms: Num | None = None
    """totalFreezesDuration, milliseconds."""
    video_lost: Int | None = None
    """packetsLost of the video streams."""
    audio_samples: Int | None = None
    """totalSamplesReceived."""
    audio_concealed: Int | None = None
    """concealedSamples."""
    audio_lost: Int | None = None
    jitter_audio_ms: Num | None = None
    """Mean jitter-buffer delay over the last interval (jitterBufferDelay /
    jitterBufferEmittedCount growth), milliseconds."""
    jitter_video_ms: Num | None = None
    rtt_ms: Num | None = None
    """The selected candidate pair's currentRoundTripTime, milliseconds."""


class QualityMark(ServerMessage, tag="quality-mark"):
    """A classroom tile's quality changed (from that classroom's reports)."""

    sent_to: ClassVar = "the lesson's teachers (and `welcome.quality_marks`)"
    peer_id: PeerId
    mark: Literal["good", "fair", "poor"] | None
    """null: the classroom left (clear the tile's mark)."""
    reason: Str[32]
    """freezes, audio_concealed, rtt, audio_only, jitter_buffer, low_tier, left or empty."""
    to: Str[16] | UnsetType = UNSET
    """Internal (the lesson event's addressee); never sent to a page."""


class QualityWelcome(WelcomeFields):
    quality_marks: list[dict[str, Any]] | UnsetType = UNSET
    """Teacher: the classrooms' current marks (`quality-mark` without `type`)."""
    quality_interval: Num | UnsetType = UNSET
    """Seconds between two `quality` reports of a page."""


def _refuse(text: str) -> ClassroomError:
    return ClassroomError(ErrorCode.BAD_MESSAGE, f"quality: {text}")


@dataclass(frozen=True)
class Report:
    """One checked report: cumulative totals since the page loaded, and interval values."""

    epoch: str
    seq: int
    interval: float | None  # seconds the page says passed since its previous report
    tier: str | None
    video_tracks: int
    audio_tracks: int
    totals: tuple[float, ...]  # _TOTALS order
    jitter_audio: float | None  # seconds, mean over the last interval
    jitter_video: float | None
    rtt: float | None  # seconds


_TOTALS = (*_COUNT_FIELDS, "freeze_ms")
_I = {name: i for i, name in enumerate(_TOTALS)}


def parse_report(data: dict[str, Any]) -> Report:
    """Range checks on one schema-checked ``quality`` message (ClassroomError if absurd)."""
    epoch = data["epoch"]
    if not _EPOCH.match(epoch):
        raise _refuse("epoch must be 1-40 of A-Z a-z 0-9 _ -")
    seq = data["seq"]
    if not 1 <= seq <= 2**31:
        raise _refuse("seq must be 1..2^31")
    totals = []
    for name in _TOTALS:
        value = data.get(name, 0)
        if value < 0:
            raise _refuse(f"{name} must not be negative")
        totals.append(float(value))
    if totals[_I["audio_concealed"]] > totals[_I["audio_samples"]]:
        raise _refuse("audio_concealed is more than audio_samples (ratio over 1)")
    interval = data.get("interval_ms")
    if interval is not None and not 0 <= interval <= 3_600_000:
        raise _refuse("interval_ms must be 0..3600000")
    tracks = {}
    for name in ("video_tracks", "audio_tracks"):
        tracks[name] = data.get(name, 1)
        if not 0 <= tracks[name] <= MAX_TRACKS:
            raise _refuse(f"{name} must be 0..{MAX_TRACKS}")
    tier = data.get("tier")
    if tier is not None and tier not in TIERS:
        raise _refuse(f"tier must be one of {list(TIERS)} or null")
    seconds = {}
    for name, most in (("jitter_audio_ms", MAX_JITTER_MS), ("jitter_video_ms", MAX_JITTER_MS),
                       ("rtt_ms", MAX_RTT_MS)):
        value = data.get(name)
        if value is not None and not 0 <= value <= most:
            raise _refuse(f"{name} must be 0..{most} ms or null")
        seconds[name] = None if value is None else value / 1000.0
    return Report(epoch, seq, None if interval is None else interval / 1000.0,
                  "audio-only" if tier == "audio" else tier,
                  tracks["video_tracks"], tracks["audio_tracks"], tuple(totals),
                  seconds["jitter_audio_ms"], seconds["jitter_video_ms"], seconds["rtt_ms"])


@dataclass
class Baseline:
    seq: int
    totals: tuple[float, ...]
    at: float  # monotonic time of the last accepted report


@dataclass(frozen=True)
class Delta:
    """What one accepted report adds: growth of the totals and the seconds it covers."""

    values: dict[str, float]  # _TOTALS names -> growth (zeros for a new baseline)
    span: float  # seconds of connection this report stands for (capped at MAX_SPAN)
    duplicate: bool = False


def check_growth(report: Report, growth: dict[str, float], elapsed: float) -> None:
    """Refuse growth no page could have seen in ``elapsed`` seconds."""
    window = elapsed + SLACK
    video, audio = max(1, report.video_tracks), max(1, report.audio_tracks)
    limits = {
        "freeze_ms": window * 1000 * video,
        "freezes": window * MAX_FREEZES_PER_S * video,
        "frames_received": window * MAX_FPS * video,
        "frames_decoded": window * MAX_FPS * video,
        "audio_samples": window * MAX_SAMPLE_RATE * audio,
        "audio_concealed": window * MAX_SAMPLE_RATE * audio,
        "video_lost": window * MAX_PACKETS_PER_S * video,
        "audio_lost": window * MAX_PACKETS_PER_S * audio,
    }
    for name, most in limits.items():
        if growth[name] > most:
            what = "frozen longer than the interval" if name == "freeze_ms" else "too fast"
            raise _refuse(f"{name} grew by {growth[name]:.0f} in {elapsed:.1f} s ({what})")
    if growth["audio_concealed"] > growth["audio_samples"]:
        raise _refuse("more audio concealed than played in the interval (ratio over 1)")


class Baselines:
    """Each (lesson, sub, epoch)'s last accepted totals on this node, bounded (LRU + TTL)."""

    def __init__(self, limit: int = BASELINES_MAX, ttl: float = BASELINE_TTL) -> None:
        self.limit, self.ttl = limit, ttl
        self._items: OrderedDict[tuple[str, str, str], Baseline] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def delta(self, key: tuple[str, str, str], report: Report, now: float) -> Delta:
        """The growth this report adds (checked), and remember it as the new baseline."""
        base = self._items.get(key)
        if base is not None and now - base.at > self.ttl:
            base = None
        if base is not None and report.seq <= base.seq:
            return Delta(dict.fromkeys(_TOTALS, 0.0), 0.0, duplicate=True)
        if base is None:
            span = min(report.interval or REPORT_INTERVAL, FIRST_SPAN_MAX)
            if report.seq == 1:  # the page's first report: everything since it loaded
                growth = dict(zip(_TOTALS, report.totals, strict=True))
            else:  # its earlier reports went to another node (or long ago): start here
                growth = dict.fromkeys(_TOTALS, 0.0)
        else:
            span = now - base.at
            if any(v < b for v, b in zip(report.totals, base.totals, strict=True)):
                growth = dict(zip(_TOTALS, report.totals, strict=True))  # counters reset
            else:
                growth = {n: v - b for n, v, b in zip(_TOTALS, report.totals, base.totals,
                                                       strict=True)}
        check_growth(report, growth, span)
        self._items[key] = Baseline(report.seq, report.totals, now)
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
        while self._items:
            oldest = next(iter(self._items.values()))
            if now - oldest.at <= self.ttl:
                break
            self._items.popitem(last=False)
        return Delta(growth, min(span, MAX_SPAN))


def mark_of(delta: Delta, report: Report) -> tuple[str, str]:
    """A tile's mark from one interval: ``(good|fair|poor, reason)``; the worst wins."""
    g, span = delta.values, max(delta.span, 1.0)
    frozen = g["freeze_ms"] / 1000 / span / max(1, report.video_tracks)
    concealed = g["audio_concealed"] / g["audio_samples"] if g["audio_samples"] else 0.0
    rtt, jitter = report.rtt or 0.0, max(report.jitter_audio or 0.0, report.jitter_video or 0.0)
    if concealed > 0.05:
        return "poor", "audio_concealed"
    if frozen > 0.1:
        return "poor", "freezes"
    if rtt > 1.0:
        return "poor", "rtt"
    if report.tier == "audio-only":
        return "poor", "audio_only"
    if concealed > 0.01:
        return "fair", "audio_concealed"
    if g["freezes"] > 0:
        return "fair", "freezes"
    if rtt > 0.4:
        return "fair", "rtt"
    if jitter > 0.4:
        return "fair", "jitter_buffer"
    if report.tier == "low":
        return "fair", "low_tier"
    return "good", ""


_RANK = {"good": 0, "fair": 1, "poor": 2}
IMPROVE_AFTER = 3
"""Consecutive better intervals before a tile's mark improves (it worsens at once)."""


class MarkSmoother:
    """A tile's shown mark: down at once, up only after :data:`IMPROVE_AFTER` better
    intervals in a row (a classroom with a freeze now and then does not blink)."""

    def __init__(self, improve_after: int = IMPROVE_AFTER) -> None:
        self.improve_after = improve_after
        self._shown: dict[str, tuple[str, str, int]] = {}  # key -> (mark, reason, better)

    def step(self, key: str, mark: str, reason: str) -> tuple[str, str] | None:
        """The mark to show now if it changed, else None."""
        shown = self._shown.get(key)
        if shown is None or _RANK[mark] > _RANK[shown[0]]:
            self._shown[key] = (mark, reason, 0)
            return mark, reason
        if _RANK[mark] == _RANK[shown[0]]:
            self._shown[key] = (shown[0], shown[1], 0)
            return None
        better = shown[2] + 1
        if better < self.improve_after:
            self._shown[key] = (shown[0], shown[1], better)
            return None
        self._shown[key] = (mark, reason, 0)
        return mark, reason

    def shown(self, key: str) -> tuple[str, str] | None:
        entry = self._shown.get(key)
        return None if entry is None else (entry[0], entry[1])

    def forget(self, key: str) -> None:
        self._shown.pop(key, None)


@dataclass
class _Pending:
    """Sums not yet written to the store for one (lesson, sub)."""

    sums: dict[str, float]
    info: dict[str, str]


class QualityFeature(Feature):
    """The ``quality`` message, its metrics, summaries and tile marks."""

    name = "quality"
    messages = (QualityReport, QualityMark, QualityWelcome)

    def __init__(self, metrics: QualityMetrics = QUALITY, store: QualityStore | None = None
                 ) -> None:
        super().__init__()
        self.metrics = metrics
        self.node: Node | None = None
        self.store = store
        self.baselines = Baselines()
        self.smoother = MarkSmoother()
        self._last: dict[str, float] = {}  # session peer id -> monotonic time of its last report
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.marks: dict[str, dict[str, dict[str, Any]]] = {}  # lesson -> peer -> mark message
        self._flusher: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, node: Node) -> None:
        self.node = node
        if self.store is None:
            self.store = open_quality_store(node.config.redis_url)
        node.hub.add_listener(self._on_event)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(),
                                                               name="quality-flush")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()
        if self.store is not None:
            await self.store.close()

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        from .authz import guard

        @guard("GET /api/lessons/{lesson}/quality", lambda r: r.app[node_key].config.secret)
        async def summaries(request: web.Request, claims: Claims) -> web.Response:
            await self.flush()
            assert self.store is not None
            lesson = request.match_info["lesson"]
            return web.json_response({"lesson": lesson,
                                      "classrooms": await self.store.summaries(lesson)})

        app.router.add_get("/api/lessons/{lesson}/quality", summaries)

    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        if claims is not None and claims.role == Role.TEACHER:
            marks = self.marks.get(session.lesson_id, {})
            return {"quality_marks": [dict(m) for m in marks.values()],
                    "quality_interval": REPORT_INTERVAL}
        return {"quality_interval": REPORT_INTERVAL}

    # reports -----------------------------------------------------------------------------
    async def handle(self, session: Session, message: Message) -> None:
        claims = session.claims
        assert claims is not None
        role = claims.role.value
        now = time.monotonic()
        last = self._last.get(session.peer_id)
        if last is not None and now - last < MIN_INTERVAL:
            self.metrics.count_report(role, "rate_limited")
            raise ClassroomError(ErrorCode.RATE_LIMITED,
                                 f"quality: at most one report per {MIN_INTERVAL:g} s")
        self._last[session.peer_id] = now
        try:
            report = parse_report(message.data)
            delta = self.baselines.delta((session.lesson_id, claims.sub, report.epoch),
                                         report, now)
        except ClassroomError:
            self.metrics.count_report(role, "refused")
            raise
        self.metrics.count_report(role, "accepted")
        if delta.duplicate:
            return
        self._ingest(session, claims, report, delta)

    def _ingest(self, session: Session, claims: Claims, report: Report, delta: Delta) -> None:
        g = delta.values
        school = self.metrics.schools.label(claims.school)
        role = claims.role.value
        self.metrics.add(
            school, role,
            counts={"frames_decoded": g["frames_decoded"],
                    "frames_received": g["frames_received"],
                    "freezes": g["freezes"], "freeze_seconds": g["freeze_ms"] / 1000.0,
                    "audio_samples": g["audio_samples"],
                    "audio_concealed_samples": g["audio_concealed"]},
            lost={"audio": g["audio_lost"], "video": g["video_lost"]},
            jitter={"audio": report.jitter_audio, "video": report.jitter_video},
            rtt=report.rtt, tier=report.tier if claims.role == Role.CLASSROOM else None,
            tier_seconds=delta.span)
        key = (session.lesson_id, claims.sub)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending({}, {})
        sums = pending.sums
        for name, value in (("seconds", delta.span), ("reports", 1.0),
                            ("freezes", g["freezes"]), ("freeze_seconds", g["freeze_ms"] / 1000),
                            ("frames_decoded", g["frames_decoded"]),
                            ("audio_samples", g["audio_samples"]),
                            ("audio_concealed_samples", g["audio_concealed"])):
            sums[name] = sums.get(name, 0.0) + value
        if report.tier is not None:
            name = "tier:" + report.tier
            sums[name] = sums.get(name, 0.0) + delta.span
        info = pending.info
        info.update(role=role, name=claims.name or claims.sub, school=claims.school or "")
        if claims.role == Role.CLASSROOM:
            changed = self.smoother.step(session.peer_id, *mark_of(delta, report))
            if changed is not None:
                info.update(mark=changed[0], reason=changed[1])
                self._set_mark(session, *changed)

    def _set_mark(self, session: Session, mark: str, reason: str) -> None:
        """Tell the lesson's teachers (every node): this tile's shown mark changed."""
        event = {"type": "quality-mark", "to": "teachers", "peer_id": session.peer_id,
                 "mark": mark, "reason": reason}
        self._remember(session.lesson_id, event)  # this node at once; others by the event
        assert self.node is not None
        self.node.spawn(self._publish(session.lesson_id, event))

    async def _publish(self, lesson_id: str, event: dict[str, Any]) -> None:
        assert self.node is not None
        try:
            await self.node.hub.store.publish(lesson_id, event)
        except StoreUnavailable:
            pass  # a mark is advisory: the next change is told again
        except Exception:
            logger.exception("quality mark publish failed")

    def _remember(self, lesson_id: str, event: dict[str, Any]) -> None:
        peer = str(event.get("peer_id"))
        if event.get("mark") is None:
            marks = self.marks.get(lesson_id)
            if marks is not None:
                marks.pop(peer, None)
                if not marks:
                    del self.marks[lesson_id]
            return
        self.marks.setdefault(lesson_id, {})[peer] = {
            "type": "quality-mark", "peer_id": peer, "mark": event["mark"],
            "reason": event.get("reason", "")}

    def _on_event(self, lesson_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "quality-mark":
            self._remember(lesson_id, event)
            assert self.node is not None
            message = {k: v for k, v in event.items() if k != "to"}
            for peer in self.node.hub.local_peers(lesson_id):
                if peer.presence.role == "teacher":
                    self.node.spawn(peer.send(message))  # type: ignore[attr-defined]
        elif kind == "lesson" and event.get("lesson_state") == "ended":
            self.marks.pop(lesson_id, None)

    async def session_closed(self, session: Session, claims: Claims) -> None:
        self._last.pop(session.peer_id, None)
        self.smoother.forget(session.peer_id)
        if session.peer_id in self.marks.get(session.lesson_id, {}):
            event = {"type": "quality-mark", "to": "teachers", "peer_id": session.peer_id,
                     "mark": None, "reason": "left"}
            self._remember(session.lesson_id, event)
            self.node.spawn(self._publish(session.lesson_id, event))  # type: ignore[union-attr]

    # summaries ---------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write the pending sums to the store (kept for the next flush if it is down)."""
        if self.store is None or not self._pending:
            return
        pending, self._pending = self._pending, {}
        for (lesson, sub), item in pending.items():
            try:
                await self.store.add(lesson, sub, item.sums, item.info)
            except StoreUnavailable:
                back = self._pending.setdefault((lesson, sub), _Pending({}, {}))
                for name, value in item.sums.items():
                    back.sums[name] = back.sums.get(name, 0.0) + value
                back.info = {**item.info, **back.info}

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:
                logger.exception("quality summaries flush failed")

