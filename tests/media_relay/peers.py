"""Real aiortc peers wired to a Relay without signaling: a teacher and classrooms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from classroom_client.media import FrameCounter, SyntheticAudioTrack, SyntheticVideoTrack
from media_relay import Relay
from media_relay.ingress import install_tap


def new_pc(*, max_bundle: bool = False) -> RTCPeerConnection:
    """``max_bundle`` for peers with two m-lines of a kind that is not the first kind:
    aiortc's default (balanced) leaves the second on a transport that never connects."""
    if max_bundle:
        return RTCPeerConnection(RTCConfiguration(iceServers=[],
                                                  bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class Teacher:
    def __init__(self, pc: RTCPeerConnection, video: SyntheticVideoTrack,
                 audio: SyntheticAudioTrack) -> None:
        self.pc = pc
        self.video = video
        self.audio = audio

    async def close(self) -> None:
        await self.pc.close()


class Classroom:
    def __init__(self, pc: RTCPeerConnection, video: FrameCounter, audio: FrameCounter,
                 joined_at: float) -> None:
        self.pc = pc
        self.video = video
        self.audio = audio
        self.joined_at = joined_at
        self.keyframes = 0
        """VP8 keyframes that reached the decoder (counted on the encoded frames)."""

    def count_keyframe(self, codec, frame) -> None:
        if frame.data and not frame.data[0] & 1:
            self.keyframes += 1

    async def close(self) -> None:
        await self.video.stop()
        await self.audio.stop()
        await self.pc.close()


async def publish(relay: Relay, lesson: str, peer_id: str = "teacher", *,
                  width: int = 640, height: int = 360) -> Teacher:
    pc = new_pc()
    video = SyntheticVideoTrack(width, height)
    audio = SyntheticAudioTrack()
    pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.publish(lesson, peer_id, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return Teacher(pc, video, audio)


async def subscribe(relay: Relay, lesson: str, peer_id: str, *, read_counter: bool = True,
                    **kwargs) -> Classroom:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks = {}

    @pc.on("track")
    def on_track(track) -> None:
        tracks[track.kind] = track

    joined = time.monotonic()
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.subscribe(lesson, peer_id, pc.localDescription.sdp, **kwargs)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    room = Classroom(pc, FrameCounter(tracks["video"], read_counter=read_counter),
                     FrameCounter(tracks["audio"]), joined)
    receiver = next(r for r in pc.getReceivers() if r.track.kind == "video")
    install_tap(receiver, room.count_keyframe, decode=True)
    return room


async def wait_until(condition: Callable[[], bool], timeout: float, what: str = "") -> None:
    """Poll ``condition`` every 20 ms until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.02)


# ---- two-way lesson: classroom uplinks and the teacher's grid ---------------------------
class UplinkPeer:
    """A classroom's camera + microphone (synthetic) published to the relay."""

    def __init__(self, pc: RTCPeerConnection, video: SyntheticVideoTrack | None,
                 audio: SyntheticAudioTrack | None, answer: str) -> None:
        self.pc = pc
        self.video = video
        self.audio = audio
        self.answer = answer

    async def close(self) -> None:
        await self.pc.close()


async def publish_uplink(relay: Relay, lesson: str, peer_id: str, *, width: int = 320,
                         height: int = 180, video: bool = True, audio: bool = True,
                         frequency: float = 440.0, **kwargs) -> UplinkPeer:
    pc = new_pc()
    vtrack = SyntheticVideoTrack(width, height) if video else None
    atrack = SyntheticAudioTrack(frequency) if audio else None
    for track in (vtrack, atrack):
        if track is not None:
            pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.publish_uplink(lesson, peer_id, pc.localDescription.sdp, **kwargs)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return UplinkPeer(pc, vtrack, atrack, answer)


class GridPeer:
    """The teacher's grid: a decoding FrameCounter per slot, and the stage audio."""

    def __init__(self, pc: RTCPeerConnection, slots: list[FrameCounter],
                 audio: FrameCounter | None) -> None:
        self.pc = pc
        self.slots = slots
        self.audio = audio

    async def close(self) -> None:
        for counter in [*self.slots, *([self.audio] if self.audio else [])]:
            await counter.stop()
        await self.pc.close()


async def open_grid(relay: Relay, lesson: str, peer_id: str = "teacher/grid", *,
                    slots: int = 2, audio: bool = True) -> GridPeer:
    pc = new_pc(max_bundle=True)
    transceivers = [pc.addTransceiver("video", direction="recvonly") for _ in range(slots)]
    audio_tr = pc.addTransceiver("audio", direction="recvonly") if audio else None
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.subscribe_grid(lesson, peer_id, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    counters = [FrameCounter(t.receiver.track) for t in transceivers]
    return GridPeer(pc, counters, FrameCounter(audio_tr.receiver.track) if audio_tr else None)


class Viewer:
    """A classroom subscriber with the two-way m-lines: counters by purpose."""

    def __init__(self, pc: RTCPeerConnection, counters: dict[str, FrameCounter]) -> None:
        self.pc = pc
        self.counters = counters

    def __getitem__(self, purpose: str) -> FrameCounter:
        return self.counters[purpose]

    async def close(self) -> None:
        for counter in self.counters.values():
            await counter.stop()
        await self.pc.close()


async def subscribe_lines(relay: Relay, lesson: str, peer_id: str,
                          purposes: tuple[str, ...] = ("camera", "share", "stage_video",
                                                       "audio", "stage_audio"),
                          **kwargs) -> Viewer:
    """Subscribe with the m-lines named (video ones first, in contract order)."""
    pc = new_pc(max_bundle=True)
    transceivers = {}
    for purpose in purposes:
        kind = "audio" if purpose in ("audio", "stage_audio") else "video"
        transceivers[purpose] = pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.subscribe(lesson, peer_id, pc.localDescription.sdp, **kwargs)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return Viewer(pc, {p: FrameCounter(t.receiver.track) for p, t in transceivers.items()})
