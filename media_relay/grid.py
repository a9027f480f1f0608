"""The teacher's grid: K video slots showing classroom uplinks, forwarded without decoding,
and one audio line with the stage classroom's Opus.

Each slot is one sendonly m-line with its own continuous timeline: when a slot gets another
uplink its RTP stream goes on (same ssrc, timestamps moved on by the wall-clock gap), it
drops frames until that uplink's next keyframe and asks the uplink for one at once (PLI).
Uplinks outside the view are not in any slot's list: they cost their receive path only.
Assignment is sticky: an uplink that stays visible keeps its slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aiortc import RTCPeerConnection, RTCRtpSender

from . import metrics
from .outline import OutLine
from .packets import VIDEO_CLOCK, VIDEO_TIME_BASE, PacketMeta, Timeline, make_packet
from .tracks import PacketTrack

if TYPE_CHECKING:
    from .config import RelayConfig
    from .stage import StageAudio
    from .uplink import Uplink

logger = logging.getLogger(__name__)


class GridSlot:
    """One video m-line of a grid: whichever uplink is assigned to it, from a keyframe."""

    def __init__(self, index: int, line: OutLine) -> None:
        self.index = index
        self.line = line
        self.uplink: Uplink | None = None
        self._timeline = Timeline(VIDEO_CLOCK)
        self._waiting = True
        self.frames = 0
        self.dropped = 0
        self.assignments = 0
        self._assigned_at: float | None = None
        self.switch_ms: float | None = None
        """Last assignment -> the new uplink's first frame forwarded here (ms)."""

    def assign(self, uplink: Uplink | None) -> None:
        """Show ``uplink`` here from its next keyframe (requested now); None empties it."""
        old = self.uplink
        if old is uplink:
            return
        if old is not None and self in old.slots:
            old.slots.remove(self)
        self.uplink = uplink
        self._waiting = True
        self.line.restart()
        self._assigned_at = time.monotonic() if uplink is not None else None
        if uplink is not None:
            self.assignments += 1
            uplink.slots.append(self)
            uplink.request_keyframe()

    def resync(self) -> None:
        """Frames of the same uplink were skipped: forward nothing until its next keyframe."""
        self._waiting = True

    def request_keyframe(self) -> None:
        """The teacher's browser lost a picture (PLI/FIR) or the line became writable."""
        if self.uplink is not None:
            self.uplink.request_keyframe()

    def forward(self, uplink: Uplink, data: bytes, timestamp: int, keyframe: bool,
                payloads: list[bytes], ingress: float) -> None:
        """One encoded VP8 frame of ``uplink`` (event loop, from its receive path)."""
        if uplink is not self.uplink:
            return
        if self._waiting:
            if not keyframe:
                self.dropped += 1
                return
            self._waiting = False
            if self._assigned_at is not None:  # the first frame since the assignment
                seconds = time.monotonic() - self._assigned_at
                self._assigned_at = None
                self.switch_ms = round(1000 * seconds, 1)
                metrics.GRID_TILE_SWITCH_SECONDS.observe(seconds)
        pts = self._timeline.map(uplink.source, timestamp)
        meta = PacketMeta(payloads, pts & 0xFFFFFFFF, keyframe, ingress)
        meta.fanout = time.monotonic()
        self.frames += 1
        self.line.sink.push(make_packet(data, pts, VIDEO_TIME_BASE, meta))

    def close(self) -> None:
        self.assign(None)
        self.line.close()

    def stats(self) -> dict:
        return {"slot": self.index, "peer_id": self.uplink.peer_id if self.uplink else None,
                "frames": self.frames, "dropped": self.dropped,
                "assignments": self.assignments, "switch_ms": self.switch_ms,
                "sent": self.line.sent}


class Grid:
    """A teacher's recvonly grid connection: slots in m-line order, plus the stage audio.

    ``uplinks`` is the lesson's uplinks by peer id, in join order (read, never changed:
    the lesson calls :meth:`assign` when they change); ``stage_audio`` the stage's audio
    fan-out its audio line joins; ``on_closed(grid)`` is called once when it closes.
    """

    def __init__(self, peer_id: str, pc: RTCPeerConnection, *, config: RelayConfig,
                 uplinks: Mapping[str, Uplink], stage_audio: StageAudio,
                 view: list[str] | None = None,
                 on_closed: Callable[[Grid], None] | None = None) -> None:
        self.config = config
        self.peer_id = peer_id
        self.pc = pc
        self._uplinks = uplinks
        self._stage_audio = stage_audio
        self._on_closed = on_closed
        self.slots: list[GridSlot] = []
        self.audio: OutLine | None = None
        self.view: list[str] | None = list(view) if view is not None else None
        """Uplink peer ids the teacher sees, in page order; None: the first K uplinks."""
        self._attached = False
        self._closed = False
        self.replaced = False

    # ---- set-up (before negotiation) ------------------------------------------------------
    def make_track(self, kind: str) -> PacketTrack:
        config = self.config
        if kind == "video":
            return PacketTrack("video", config.video_queue_frames)
        return PacketTrack("audio", config.audio_queue_packets)

    def add_line(self, sender: RTCRtpSender, track: PacketTrack) -> None:
        config = self.config
        if track.kind == "video":
            slot: GridSlot | None = None

            def keyframe() -> None:
                if slot is not None:
                    slot.request_keyframe()

            line = OutLine(config, sender, track, on_keyframe_request=keyframe,
                           on_ready=keyframe, latency=metrics.LATENCY_GRID)
            slot = GridSlot(len(self.slots), line)
            track._on_need_keyframe = lambda reason: keyframe()
            self.slots.append(slot)
        else:
            self.audio = OutLine(config, sender, track, latency=metrics.LATENCY_STAGE_AUDIO)

    # ---- view ---------------------------------------------------------------------------
    def attach(self) -> None:
        """Connected: start forwarding (the view's uplinks and the stage audio)."""
        if self._attached or self._closed:
            return
        self._attached = True
        if self.audio is not None:
            self._stage_audio.attach(self.audio.sink, None)
        self.assign()

    def set_view(self, visible: list[str] | None) -> dict[str, int]:
        self.view = list(visible) if visible is not None else None
        return self.assign()

    def assign(self) -> dict[str, int]:
        """Give each visible uplink a slot (sticky), empty the others; ``{peer_id: slot}``."""
        uplinks = self._uplinks
        if self.view is None:
            wanted = list(uplinks)
        else:
            seen: set[str] = set()
            wanted = [p for p in self.view if p in uplinks and not (p in seen or seen.add(p))]
        wanted = wanted[:len(self.slots)]
        if self._closed:
            return {}
        keep = {}
        for slot in self.slots:
            uplink = slot.uplink
            if uplink is not None and uplink.peer_id in wanted and uplinks.get(
                    uplink.peer_id) is uplink and uplink.peer_id not in keep:
                keep[uplink.peer_id] = slot
            elif uplink is not None:
                slot.assign(None)
        free = [slot for slot in self.slots if slot.uplink is None]
        for peer_id in wanted:
            if peer_id not in keep:
                slot = free.pop(0)
                slot.assign(uplinks[peer_id])
                keep[peer_id] = slot
        return {peer_id: keep[peer_id].index for peer_id in wanted}

    def mapping(self) -> dict[str, int]:
        return {s.uplink.peer_id: s.index for s in self.slots if s.uplink is not None}

    # ---- lifetime -------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_closed is not None:
            self._on_closed(self)
        for slot in self.slots:
            slot.close()
        if self.audio is not None:
            self._stage_audio.detach(self.audio.sink)
            self.audio.close()
        await self.pc.close()

    def bytes_sent(self) -> int:
        lines = [s.line for s in self.slots] + ([self.audio] if self.audio else [])
        return sum(line.bytes_sent for line in lines)

    def stats(self) -> dict:
        return {"peer_id": self.peer_id, "state": self.pc.connectionState,
                "view": self.view, "slots": [s.stats() for s in self.slots],
                "audio": self.audio.stats() if self.audio is not None else None}
