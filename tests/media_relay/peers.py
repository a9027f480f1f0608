"""Real aiortc peers wired to a Relay without signaling: a teacher and classrooms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from classroom_client.media import FrameCounter, SyntheticAudioTrack, SyntheticVideoTrack
from media_relay import Relay
from media_relay.ingress import install_tap


def new_pc() -> RTCPeerConnection:
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
