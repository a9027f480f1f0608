"""Classroom uplinks across the cascade: an edge's classrooms in the origin's grid and stage.

On an edge a classroom's uplink (camera and microphone) is never decoded: its frames go up
the lesson's link to the origin while the origin wants them (video while a teacher's grid
there shows the classroom or it is on stage, audio while it is on stage). At the origin a
:class:`RemoteUplink` stands in for it among the lesson's uplinks, so the grid slots and
the stage use it exactly as a local one (both are :class:`~.uplink.UplinkOutputs`); the
stage is always made at the origin and the edges pull its lines back (docs/cascade.md).

The edge announces its uplinks (``index``, relay peer ``id``, ``school``, ``gen``: a new
connection of the same classroom) and the origin answers with what it wants of each and
its keyframe requests. Frame, edge -> origin: ``!BHBId`` (kind 0 video / 1 audio, uplink
index, flags, RTP timestamp, edge send time) + the encoded frame as received.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from . import metrics
from .uplink import UplinkOutputs

RelayLesson = Any
"""A :class:`~.lesson.RelayLesson` (not imported: only the modules that build lessons do)."""

_UP = struct.Struct("!BHBId")
MAX_UPLINKS = 1024
"""Uplinks one edge may announce for one lesson."""
_ID_MAX = 200


def encode_uplink_frame(kind: int, index: int, keyframe: bool, timestamp: int, sent: float,
                        data: bytes) -> bytes:
    return _UP.pack(kind, index, 1 if keyframe else 0, timestamp & 0xFFFFFFFF, sent) + data


def decode_uplink_frame(frame: bytes) -> tuple[int, int, bool, int, float, bytes]:
    """``ValueError`` for a torn or unknown frame."""
    try:
        kind, index, flags, timestamp, sent = _UP.unpack_from(frame, 0)
    except struct.error as exc:
        raise ValueError(f"torn uplink frame: {exc}") from None
    if kind > 1:
        raise ValueError("unknown uplink frame kind")
    return kind, index, bool(flags & 1), timestamp, sent, bytes(frame[_UP.size:])


def _local_uplinks(lesson: RelayLesson) -> dict[str, Any]:
    return {rid: u for rid, u in lesson.uplinks.items() if not isinstance(u, RemoteUplink)}


# ---- the edge's side -------------------------------------------------------------------
class UpstreamSender:
    """An edge uplink's ``upstream``: its frames to the origin, as much as it wants."""

    def __init__(self, index: int, send: Callable[[bytes], None]) -> None:
        self.index = index
        self.send = send
        self.video = False
        self.audio = False

    def offer_video(self, uplink: UplinkOutputs, codec_name: str, data: bytes,
                    timestamp: int, keyframe: bool, now: float) -> None:
        if self.video:
            self.send(encode_uplink_frame(0, self.index, keyframe, timestamp, time.time(),
                                          data))

    def offer_audio(self, uplink: UplinkOutputs, data: bytes, timestamp: int,
                    now: float) -> None:
        if self.audio:
            self.send(encode_uplink_frame(1, self.index, True, timestamp, time.time(), data))

    def resync(self) -> None:
        """Nothing to reset here: the origin's stand-in resyncs its own viewers."""


class EdgeUplinks:
    """The uplinks of one lesson on an edge: announced to the origin, sent when wanted."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self.send = send
        self._index: dict[str, int] = {}
        self._gen: dict[str, tuple[int, int]] = {}  # rid -> (id of the Uplink, generation)
        self._wanted: dict[int, tuple[bool, bool]] = {}
        self._senders: dict[int, UpstreamSender] = {}
        self.frames_up = 0

    def _send(self, frame: bytes) -> None:
        self.frames_up += 1
        metrics.CASCADE_UP.inc()
        self.send(frame)

    def new_link(self, lesson: RelayLesson | None) -> None:
        """A new link: the origin knows nothing yet (nothing is sent until it asks)."""
        self._wanted.clear()
        if lesson is not None:
            self.apply(lesson)

    def announce(self, lesson: RelayLesson) -> list[dict[str, Any]]:
        """This lesson's local uplinks as the origin is told of them (sorted by index)."""
        items = []
        for rid, uplink in _local_uplinks(lesson).items():
            if rid not in self._index:
                if len(self._index) >= MAX_UPLINKS:
                    continue
                self._index[rid] = len(self._index)
            seen, gen = self._gen.get(rid, (0, 0))
            if seen != id(uplink):
                self._gen[rid] = (id(uplink), gen + 1)
            items.append({"index": self._index[rid], "id": rid, "school": uplink.school,
                          "gen": self._gen[rid][1]})
        items.sort(key=lambda item: item["index"])
        return items

    def want(self, lesson: RelayLesson | None, wanted: dict[Any, Any]) -> None:
        """The origin's ``{index: [video, audio]}`` (others: nothing)."""
        parsed: dict[int, tuple[bool, bool]] = {}
        for key, value in list(wanted.items())[:MAX_UPLINKS]:
            try:
                parsed[int(key)] = (bool(value[0]), bool(value[1]))
            except (ValueError, TypeError, IndexError):
                raise ValueError(f"bad uplink demand {key!r}: {value!r}") from None
        self._wanted = parsed
        if lesson is not None:
            self.apply(lesson)

    def apply(self, lesson: RelayLesson) -> None:
        """Set each local uplink's ``upstream`` to what the origin wants of it (a classroom
        that reconnected is a new Uplink: it gets its sender again)."""
        for rid, uplink in _local_uplinks(lesson).items():
            index = self._index.get(rid)
            video, audio = self._wanted.get(index, (False, False)) if index is not None \
                else (False, False)
            if not (video or audio):
                uplink.upstream = None
                continue
            sender = self._senders.get(index)  # type: ignore[arg-type]
            if sender is None:
                sender = self._senders[index] = UpstreamSender(index, self._send)  # type: ignore[index]
            if not sender.video and video:
                uplink.request_keyframe()  # the origin's viewers start from a keyframe
            sender.video, sender.audio = video, audio
            uplink.upstream = sender

    def keyframe(self, lesson: RelayLesson | None, index: Any) -> None:
        """The origin asks for a keyframe of one of our uplinks."""
        if lesson is None:
            return
        for rid, i in self._index.items():
            if i == index:
                uplink = _local_uplinks(lesson).get(rid)
                if uplink is not None:
                    uplink.request_keyframe()
                return

    def close(self, lesson: RelayLesson | None) -> None:
        self._wanted.clear()
        if lesson is not None:
            for uplink in _local_uplinks(lesson).values():
                uplink.upstream = None


# ---- the origin's side -----------------------------------------------------------------
class RemoteUplink(UplinkOutputs):
    """An edge's classroom uplink, at the origin: fed by the link, seen by grids and stage."""

    def __init__(self, peer_id: str, school: str | None, source: int, gen: int,
                 ask_keyframe: Callable[[], None]) -> None:
        self.peer_id = peer_id
        self.school = school
        self.source = source
        self.gen = gen
        self._ask = ask_keyframe
        self._init_outputs()
        self.frames_in = 0
        self.keyframes_in = 0
        self.audio_packets_in = 0
        self.keyframe_requests = 0
        self.last_media_at: float | None = None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._ask()

    def receive(self, kind: int, timestamp: int, data: bytes) -> None:
        now = time.monotonic()
        self.last_media_at = now
        if kind == 0:
            self.frames_in += 1
            if self.fan_video("VP8", data, timestamp, now):
                self.keyframes_in += 1
        else:
            self.audio_packets_in += 1
            self.fan_audio(data, timestamp, now)

    async def close(self) -> None:
        """The lesson closes: nothing of ours to release (the edge owns the connection)."""
        for slot in list(self.slots):
            slot.assign(None)

    def wants(self) -> tuple[bool, bool]:
        """(video, audio) the origin needs from the edge now."""
        on_stage = self.stage is not None
        return bool(self.slots) or on_stage, on_stage

    def stats(self) -> dict:
        return {"peer_id": self.peer_id, "remote": True, "active": self.last_media_at
                is not None and time.monotonic() - self.last_media_at < 3.0,
                "school": self.school, "frames_in": self.frames_in,
                "keyframes_in": self.keyframes_in, "audio_packets_in": self.audio_packets_in,
                "keyframe_requests": self.keyframe_requests,
                "size": list(self.size) if self.size else None,
                "on_stage": self.stage is not None,
                "slot": next((s.index for s in self.slots), None)}


class OriginUplinks:
    """One edge's announced uplinks as :class:`RemoteUplink` among the lesson's uplinks."""

    def __init__(self, ask_keyframe: Callable[[int], None]) -> None:
        self.ask_keyframe = ask_keyframe
        self.by_index: dict[int, RemoteUplink] = {}
        self.bad_frames = 0

    def announce(self, lesson: RelayLesson | None, items: Any) -> bool:
        """The edge's current uplinks (``ValueError`` for a malformed list); True when the
        lesson's uplinks changed (its grids' slots may have)."""
        if not isinstance(items, list) or len(items) > MAX_UPLINKS:
            raise ValueError(f"uplinks must be a list of at most {MAX_UPLINKS}")
        wanted: dict[int, tuple[str, str | None, int]] = {}
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("an uplink must be an object")
            index, rid, school, gen = item.get("index"), item.get("id"), item.get("school"), \
                item.get("gen", 0)
            if not (isinstance(index, int) and 0 <= index < 65536 and isinstance(rid, str)
                    and 0 < len(rid) <= _ID_MAX and isinstance(gen, int)
                    and (school is None or isinstance(school, str) and len(school) <= _ID_MAX)):
                raise ValueError(f"bad uplink {item!r:.200}")
            wanted[index] = (rid, school, gen)
        if lesson is None:
            return False
        changed = False
        for index, remote in list(self.by_index.items()):
            spec = wanted.get(index)
            if spec is None or spec[0] != remote.peer_id or spec[2] != remote.gen:
                del self.by_index[index]
                lesson.remove_uplink(remote)
                changed = True
        for index, (rid, school, gen) in wanted.items():
            if index in self.by_index or rid in lesson.uplinks:
                continue  # the same classroom connected here too: the local one wins
            remote = RemoteUplink(rid, school, lesson.next_source(), gen,
                                  lambda index=index: self.ask_keyframe(index))
            self.by_index[index] = remote
            lesson.add_uplink(remote)
            changed = True
        return changed

    def frame(self, frame: bytes) -> None:
        try:
            kind, index, _keyframe, timestamp, _sent, data = decode_uplink_frame(frame)
        except ValueError:
            self.bad_frames += 1
            return
        remote = self.by_index.get(index)
        if remote is not None:
            remote.receive(kind, timestamp, data)

    def demand(self) -> dict[str, list[bool]]:
        """What the origin wants of each announced uplink (only those it wants)."""
        out = {}
        for index, remote in sorted(self.by_index.items()):
            video, audio = remote.wants()
            if video or audio:
                out[str(index)] = [video, audio]
        return out

    def move(self, old: RelayLesson | None, new: RelayLesson | None) -> None:
        """The lesson was rebuilt (the teacher left and came back): the same stand-ins."""
        for remote in self.by_index.values():
            if old is not None and not old.closed:
                old.remove_uplink(remote)
            if new is not None and remote.peer_id not in new.uplinks:
                new.add_uplink(remote)

    def close(self, lesson: RelayLesson | None) -> None:
        if lesson is not None and not lesson.closed:
            for remote in self.by_index.values():
                lesson.remove_uplink(remote)
        self.by_index.clear()

    def stats(self) -> list[dict]:
        return [r.stats() for r in self.by_index.values()]
