"""Origin -> edge cascade, the relay's half: a lesson's encoded packets carried between nodes.

A lesson's **origin** (the node its teacher publishes to) encodes the ladder once; an
**edge** (a node with classrooms of that lesson) pulls only the lines its own classrooms
use and hands the packets to its local renditions' sinks as they are, never decoding or
encoding (docs/cascade.md). This module is transport-free: the origin side
(:class:`OriginLink`) turns the lesson's shared packets into frames for a ``send``
callback; the edge side (:class:`EdgeLink`) turns frames back into packets, says which
lines its classrooms use (:meth:`EdgeLink.demand`) and passes their keyframe requests up
(one per line, coalesced). Signaling carries the frames (signaling/cascade.py).

A line is ``("camera", tier, codec)``, ``("share", tier, codec)``, ``("stage", tier,
codec)``, ``("audio",)`` or ``("stage-audio",)``: the stage is made at the origin (an
edge's classrooms' uplinks go up to it, media_relay/cascade_uplinks.py) and pulled back.
Frame: ``!BBBBqd`` (kind, tier index, codec, flags, pts, origin send time) + ``!H`` payload
count + ``!I`` per payload length + the payloads (RTP payloads as packetized once at the
origin).
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import av

from . import metrics
from .cascade_uplinks import EdgeUplinks, OriginUplinks
from .packets import AUDIO_TIME_BASE, VIDEO_TIME_BASE, PacketMeta, make_packet

if TYPE_CHECKING:
    from .feed import VideoFeed
    from .peers import PeerRegistry

RelayLesson = Any
"""A :class:`~.lesson.RelayLesson` (not imported: only the modules that build lessons do)."""

Line = tuple[str, ...]
KINDS = ("camera", "share", "audio", "stage", "stage-audio")
_AUDIO_KINDS = ("audio", "stage-audio")
_VIDEO_KINDS = ("camera", "share", "stage")
CODECS = ("VP8", "H264")
_HEAD = struct.Struct("!BBBBqd")
_COUNT = struct.Struct("!H")
_LEN = struct.Struct("!I")
KEYFRAME_GAP = 0.25
"""Seconds between two keyframe requests an edge sends for one line (coalesced, not lost)."""
_HOP_SAMPLES = 2000


def encode_frame(kind: int, tier: int, codec: int, keyframe: bool, pts: int, sent: float,
                 payloads: list[bytes]) -> bytes:
    """One packet as a link frame."""
    parts = [_HEAD.pack(kind, tier, codec, 1 if keyframe else 0, pts, sent),
             _COUNT.pack(len(payloads))]
    parts.extend(_LEN.pack(len(p)) for p in payloads)
    parts.extend(payloads)
    return b"".join(parts)


def decode_frame(frame: bytes) -> tuple[int, int, int, bool, int, float, list[bytes]]:
    """A link frame back to its fields; ``ValueError`` for a torn or forged one."""
    try:
        kind, tier, codec, flags, pts, sent = _HEAD.unpack_from(frame, 0)
        (count,) = _COUNT.unpack_from(frame, _HEAD.size)
        offset = _HEAD.size + _COUNT.size
        lengths = [_LEN.unpack_from(frame, offset + i * _LEN.size)[0] for i in range(count)]
    except struct.error as exc:
        raise ValueError(f"torn link frame: {exc}") from None
    offset += count * _LEN.size
    if offset + sum(lengths) != len(frame) or kind >= len(KINDS) or codec >= len(CODECS):
        raise ValueError("link frame does not add up")
    payloads = []
    for length in lengths:
        payloads.append(frame[offset:offset + length])
        offset += length
    return kind, tier, codec, bool(flags & 1), pts, sent, payloads


def check_line(line: Any, tiers: list[str]) -> Line:
    """A line named by the other side, checked (``ValueError`` otherwise)."""
    if not isinstance(line, list | tuple) or not line or line[0] not in KINDS:
        raise ValueError(f"not a line: {line!r}")
    if line[0] in _AUDIO_KINDS:
        if len(line) != 1:
            raise ValueError(f"not a line: {line!r}")
        return (str(line[0]),)
    if len(line) != 3 or line[1] not in tiers or line[2] not in CODECS:
        raise ValueError(f"not a line: {line!r}")
    return (str(line[0]), str(line[1]), str(line[2]))


class _LinkSink:
    """What a rendition or the audio fan-out of the origin hands a line's packets to
    (first, before the local subscribers: the edge's classrooms wait the least)."""

    relay_first = True

    def __init__(self, link: OriginLink, line: Line) -> None:
        self.link = link
        self.line = line
        self.kind = KINDS.index(line[0])
        self.tier_index = link.tiers.index(line[1]) if len(line) > 1 else 0
        self.codec = CODECS.index(line[2]) if len(line) > 1 else 0
        self.video_codec = line[2] if len(line) > 1 else "VP8"
        self.tier = line[1] if len(line) > 1 else None

    def push(self, packet: av.Packet) -> None:
        meta: PacketMeta = packet.opaque
        self.link.sent += 1
        self.link.send(encode_frame(self.kind, self.tier_index, self.codec, meta.keyframe,
                                    int(packet.pts), time.time(), list(meta.payloads)))

    def restart(self) -> None:
        """Nothing queued here (a feed calls this when it moves a sink)."""


class OriginLink:
    """One edge's pull of one lesson at its origin: the lines it wants, attached to the
    lesson's feeds as sinks (a join asks the rendition for a keyframe)."""

    def __init__(self, registry: PeerRegistry, lesson_id: str,
                 send: Callable[[bytes], None],
                 ask_uplink_keyframe: Callable[[int], None] | None = None) -> None:
        self.registry = registry
        self.lesson_id = lesson_id
        self.send = send
        self.uplinks = OriginUplinks(ask_uplink_keyframe or (lambda index: None))
        """The edge's classrooms' uplinks, as stand-ins among the lesson's uplinks."""
        self.tiers = list(registry.config.ladder.names)
        self.wanted: set[Line] = set()
        self._attached: dict[Line, _LinkSink] = {}
        self._lesson: RelayLesson | None = None
        self.sent = 0

    def want(self, lines: list[Any]) -> None:
        """The lines the edge's classrooms use now (``ValueError`` for a bad one)."""
        self.wanted = {check_line(line, self.tiers) for line in lines}
        self.sync()

    def keyframe(self, line: Any) -> None:
        """The edge asks for a keyframe on a line it pulls."""
        line = check_line(line, self.tiers)
        lesson = self._lesson
        if lesson is None or line not in self._attached or line[0] in _AUDIO_KINDS:
            return
        self._feed(lesson, line[0]).request_keyframe(line[1], "pli", line[2])

    def announce_uplinks(self, items: Any) -> bool:
        """The edge's uplinks now (``ValueError`` for a bad list); True: the lesson's
        uplinks changed (its grids' slots may have)."""
        self.sync()
        return self.uplinks.announce(self._lesson, items)

    def uplink_frame(self, frame: bytes) -> None:
        """A frame of one of the edge's uplinks."""
        self.uplinks.frame(frame)

    def uplink_demand(self) -> dict[str, list[bool]]:
        return self.uplinks.demand()

    def stage_state(self) -> tuple[bool, list[int] | None]:
        """The stage as an edge needs it: live, and its size."""
        lesson = self.registry.lessons.get(self.lesson_id)
        if lesson is None or lesson.closed:
            return False, None
        return bool(lesson.stage.live), list(lesson.stage.size)

    def share_active(self) -> bool:
        lesson = self.registry.lessons.get(self.lesson_id)
        return bool(lesson is not None and lesson.share_active)

    def publishing(self) -> bool:
        lesson = self.registry.lessons.get(self.lesson_id)
        return bool(lesson is not None and lesson.publisher is not None)

    @staticmethod
    def _feed(lesson: RelayLesson, kind: str) -> VideoFeed:
        return lesson.media.video_feed(kind)

    def sync(self) -> None:
        """Attach what is wanted and not attached, detach the rest; a lesson rebuilt
        since (the teacher left and came back) gets every line again."""
        lesson = self.registry.lessons.get(self.lesson_id)
        if lesson is not None and lesson.closed:
            lesson = None
        if lesson is not self._lesson:
            self._detach_all()
            self.uplinks.move(self._lesson, lesson)
            self._lesson = lesson
        if lesson is None:
            return
        for line in [ln for ln in self._attached if ln not in self.wanted]:
            self._detach(lesson, self._attached.pop(line))
        for line in sorted(self.wanted - set(self._attached)):
            sink = self._attached[line] = _LinkSink(self, line)
            if line[0] == "audio":
                lesson.media.audio.attach(sink)
            elif line[0] == "stage-audio":
                lesson.media.stage.audio.attach(sink, None)
            else:
                self._feed(lesson, line[0]).attach(sink, line[1], "join")

    def _detach(self, lesson: RelayLesson, sink: _LinkSink) -> None:
        if sink.line[0] == "audio":
            lesson.media.audio.detach(sink)
        elif sink.line[0] == "stage-audio":
            lesson.media.stage.audio.detach(sink)
        elif sink.tier is not None:
            self._feed(lesson, sink.line[0]).detach(sink, sink.tier)

    def _detach_all(self) -> None:
        lesson = self._lesson
        if lesson is not None and not lesson.closed:
            for sink in self._attached.values():
                self._detach(lesson, sink)
        self._attached.clear()

    def close(self) -> None:
        self._detach_all()
        self.uplinks.close(self._lesson)
        self._lesson = None

    def stats(self) -> dict:
        return {"lesson": self.lesson_id, "lines": sorted("/".join(ln) for ln in self._attached),
                "frames_sent": self.sent, "uplinks": self.uplinks.stats(),
                "uplink_bad_frames": self.uplinks.bad_frames}


class EdgeLink:
    """A lesson on an edge node: packets from the origin into the local feeds.

    ``send_keyframe(line)`` is called (coalesced per line, :data:`KEYFRAME_GAP`) when a
    local classroom needs a keyframe on a line the origin encodes.
    """

    def __init__(self, registry: PeerRegistry, lesson_id: str,
                 send_keyframe: Callable[[Line], None],
                 send_up: Callable[[bytes], None] | None = None) -> None:
        self.registry = registry
        self.lesson_id = lesson_id
        self.send_keyframe = send_keyframe
        self.uplinks = EdgeUplinks(send_up or (lambda frame: None))
        """This node's classrooms' uplinks of the lesson, sent up as the origin wants."""
        self.tiers = list(registry.config.ladder.names)
        self.generation = 0
        self._hooked: dict[int, Any] = {}
        self._asked: dict[Line, float] = {}
        self._pending: set[Line] = set()
        self.frames = 0
        self.bad_frames = 0
        self.frames_refused = 0
        """Frames that came while the lesson had a publisher here (dropped: no mixing)."""
        self.last_frame_at: float | None = None
        self.hops: deque[float] = deque(maxlen=_HOP_SAMPLES)
        """Origin fan-out -> edge hand-off, seconds (wall clocks: one machine or NTP)."""

    def new_link(self) -> None:
        """A new link to an origin (the first, a re-pull, or a new origin after a move)."""
        self.generation += 1
        self._asked.clear()
        self.uplinks.new_link(self._lesson())

    def _lesson(self) -> RelayLesson | None:
        lesson = self.registry.lessons.get(self.lesson_id)
        return None if lesson is None or lesson.closed else lesson

    def announce_uplinks(self) -> list[dict[str, Any]]:
        """This node's uplinks of the lesson, as the origin is told of them."""
        lesson = self._lesson()
        if lesson is None:
            return []
        self.uplinks.apply(lesson)  # a classroom that reconnected gets its sender again
        return self.uplinks.announce(lesson)

    def want_uplinks(self, wanted: dict[Any, Any]) -> None:
        """The origin's demand for our uplinks (``ValueError`` when malformed)."""
        self.uplinks.want(self._lesson(), wanted)

    def uplink_keyframe(self, index: Any) -> None:
        self.uplinks.keyframe(self._lesson(), index)

    def set_stage_state(self, live: bool, size: Any) -> None:
        """The origin's stage: live or not, and its size (``[w, h]``)."""
        lesson = self._lesson()
        if lesson is None:
            return
        ok = isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and 0 < v <= 8192 for v in size)
        lesson.stage.set_remote_state(bool(live), (size[0], size[1]) if ok else None)

    def close(self) -> None:
        """The pull ends: our uplinks stop going up."""
        self.uplinks.close(self._lesson())

    def demand(self) -> list[Line]:
        """Lines the local classrooms use now (sorted: the same set compares equal)."""
        lesson = self._lesson()
        if lesson is None:
            return []
        stage = lesson.media.stage
        if lesson.publisher is None and not stage.remote:
            stage.set_remote(True)  # made at the origin: our uplinks go up, its lines down
        lines: set[Line] = set()
        staged = stage.peer_id is not None
        for kind in _VIDEO_KINDS:
            feed = lesson.media.video_feed(kind, create=False)
            if feed is None or (kind == "stage" and not staged):
                continue
            for codec, table in (("VP8", feed.renditions), ("H264", feed.h264)):
                for tier, rendition in table.items():
                    self._hook(kind, codec, rendition)
                    if rendition.subscriber_count:
                        lines.add((kind, tier, codec))
        if lesson.media.audio.sink_count:
            lines.add(("audio",))
        if staged and stage.audio.sink_count:
            lines.add(("stage-audio",))
        return sorted(lines)

    def _hook(self, kind: str, codec: str, rendition: Any) -> None:
        """Route a local rendition's keyframe requests to the origin."""
        if self._hooked.get(id(rendition)) is rendition:
            return
        self._hooked[id(rendition)] = rendition
        line = (kind, rendition.tier, codec)
        rendition.keyframe_hook = lambda reason, line=line: self.ask_keyframe(line)

    def ask_keyframe(self, line: Line) -> None:
        now = time.monotonic()
        if now - self._asked.get(line, -1e9) >= KEYFRAME_GAP:
            self._asked[line] = now
            self._pending.discard(line)
            self.send_keyframe(line)
        else:
            self._pending.add(line)

    def flush_keyframes(self) -> None:
        """Send the requests coalesced during the last gap (call a few times a second)."""
        for line in sorted(self._pending):
            self.ask_keyframe(line)

    def deliver(self, frame: bytes) -> None:
        """A frame from the origin, to the local sinks of its line."""
        try:
            kind, tier, codec, keyframe, pts, sent, payloads = decode_frame(frame)
        except ValueError:
            self.bad_frames += 1
            return
        lesson = self._lesson()
        if lesson is None:
            return
        if lesson.publisher is not None:
            # the teacher's media is here now (this node became the origin): frames from
            # the old origin would mix with it, or loop back to it through this node
            self.frames_refused += 1
            return
        now = time.monotonic()
        self.frames += 1
        self.last_frame_at = now
        hop = max(0.0, time.time() - sent)
        self.hops.append(hop)
        metrics.CASCADE_HOP.observe(hop)
        metrics.CASCADE_DOWN.inc()
        data = b"".join(payloads)
        name = KINDS[kind]
        source = ("edge", self.generation)  # never equal to a local publisher's source
        if name == "audio":
            lesson.media.audio.forward(source, data, pts & 0xFFFFFFFF, now)
            return
        if name == "stage-audio":
            lesson.media.stage.audio.forward(source, data, pts & 0xFFFFFFFF, now)
            return
        if tier >= len(self.tiers):
            self.bad_frames += 1
            return
        feed = lesson.media.video_feed(name, create=False)
        if feed is None:
            return  # nobody here watches that feed (no rendition either)
        table = feed.h264 if CODECS[codec] == "H264" else feed.renditions
        rendition = table.get(self.tiers[tier])
        if rendition is None:
            return
        out = feed.source.timeline.map(source, pts, strict=False)
        meta = PacketMeta(payloads, out & 0xFFFFFFFF, keyframe, now)
        rendition.deliver(make_packet(data, out, VIDEO_TIME_BASE, meta))

    def set_share_active(self, active: bool) -> None:
        lesson = self._lesson()
        if lesson is not None:
            lesson.set_share_active(bool(active))

    def hop_ms(self) -> dict:
        hops = sorted(self.hops)
        if not hops:
            return {"p50": None, "p95": None}
        return {"p50": round(1000 * hops[len(hops) // 2], 2),
                "p95": round(1000 * hops[min(len(hops) - 1, int(0.95 * len(hops)))], 2)}

    def stats(self) -> dict:
        return {"lesson": self.lesson_id, "frames": self.frames, "bad_frames": self.bad_frames,
                "frames_refused": self.frames_refused,
                "generation": self.generation, "hop_ms": self.hop_ms(),
                "lines": ["/".join(ln) for ln in self.demand()],
                "uplink_frames_up": self.uplinks.frames_up}


__all__ = ["AUDIO_TIME_BASE", "EdgeLink", "OriginLink", "decode_frame", "encode_frame"]
