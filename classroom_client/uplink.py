"""Two-way lesson media for a headless client (docs/two-way.md), beside ClassroomClient:

    pc = await publish_uplink(room, SyntheticVideoTrack(320, 240), SyntheticAudioTrack())
    lines = await subscribe_with_stage(room)  # video camera/share/stage; audio teacher/stage
    grid = await subscribe_grid(teacher, slots=4)  # video: slot 0..3; audio: the stage classroom
    await grid.video[0].wait_for(10, timeout=5)

Every receiving m-line gets its own decoding :class:`~classroom_client.media.FrameCounter`,
in m-line order, so a test can tell which line (slot, stage, share) media arrives on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
)

from .client import ClassroomClient
from .ice import rtc_ice_servers
from .media import FrameCounter

STAGE_VIDEO, STAGE_AUDIO = 2, 1  # m-line index per kind of the stage in a subscribe offer


@dataclass
class MediaLines:
    """One receiving connection's counters, per kind in m-line order."""

    pc: RTCPeerConnection
    video: list[FrameCounter] = field(default_factory=list)
    audio: list[FrameCounter] = field(default_factory=list)

    async def stop(self) -> None:
        for counter in self.video + self.audio:
            await counter.stop()

    @property
    def stage_video(self) -> FrameCounter:
        return self.video[STAGE_VIDEO]

    @property
    def stage_audio(self) -> FrameCounter:
        return self.audio[STAGE_AUDIO]


def _max_bundle_pc(client: ClassroomClient) -> RTCPeerConnection:
    """Every m-line on one transport. aiortc's default (balanced) policy leaves a second
    m-line of a kind that is not the first kind (the stage audio) on a transport that never
    connects, and its packets land on the first audio line."""
    servers = rtc_ice_servers(client.welcome.get("ice_servers", []), client.turn_url)
    return RTCPeerConnection(RTCConfiguration(iceServers=servers,
                                              bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def publish_uplink(client: ClassroomClient, video: MediaStreamTrack | None,
                         audio: MediaStreamTrack | None, *,
                         extra_video: MediaStreamTrack | None = None) -> RTCPeerConnection:
    """A classroom's camera and microphone to the relay (``purpose: uplink``).
    ``extra_video`` adds a second video m-line (the relay refuses it:
    ``too_many_tracks``)."""
    old = client.pcs.pop("uplink", None)
    if old is not None:
        await old.close()
    pc = client._new_pc()
    client.pcs["uplink"] = pc
    for track in (video, extra_video, audio):
        if track is not None:
            pc.addTransceiver(track, direction="sendonly")
    await client._negotiate(pc, "uplink")
    return pc


async def _receive(client: ClassroomClient, purpose: str, videos: int, audios: int
                   ) -> MediaLines:
    old = client.pcs.pop(purpose, None)
    if old is not None:
        await old.close()
    pc = _max_bundle_pc(client)
    client.pcs[purpose] = pc
    transceivers = [pc.addTransceiver("video", direction="recvonly") for _ in range(videos)]
    transceivers += [pc.addTransceiver("audio", direction="recvonly") for _ in range(audios)]
    await client._negotiate(pc, purpose)
    lines = MediaLines(pc)
    for transceiver in transceivers:
        counter = FrameCounter(transceiver.receiver.track)
        (lines.video if transceiver.kind == "video" else lines.audio).append(counter)
    return lines


async def subscribe_with_stage(client: ClassroomClient) -> MediaLines:
    """A classroom's lesson subscription with every line: video teacher camera, teacher
    share, stage classroom; audio teacher, stage classroom."""
    return await _receive(client, "subscribe", 3, 2)


async def subscribe_grid(client: ClassroomClient, slots: int) -> MediaLines:
    """The teacher's grid: ``slots`` video lines (slot i on line i) + the stage's audio."""
    return await _receive(client, "grid", slots, 1)
