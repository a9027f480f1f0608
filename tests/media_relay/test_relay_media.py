"""Media through the relay with real aiortc peers: fan-out, late join, reconnect, PLI, latency."""

from __future__ import annotations

import asyncio
import time

from aiortc import RTCRtpReceiver
from prometheus_client import REGISTRY

from media_relay import Relay

from .peers import publish, subscribe, wait_until


def latency_count(kind: str) -> float:
    return REGISTRY.get_sample_value(
        "classroom_relay_forward_latency_seconds_count", {"kind": kind}) or 0.0


async def test_two_subscribers_receive_decoded_video_and_audio(relay: Relay, events) -> None:
    audio_before, video_before = latency_count("audio"), latency_count("video")
    teacher = await publish(relay, "L1")
    rooms = [await subscribe(relay, "L1", "c1"), await subscribe(relay, "L1", "c2")]
    await wait_until(lambda: all(r.video.frames >= 30 and r.audio.frames >= 50 for r in rooms),
                     10, "30 video frames and 50 audio frames at each classroom")
    for room in rooms:
        assert room.video.size == (640, 360)
        assert room.keyframes >= 1
        # the frame number burned in by the teacher's source comes through, and is recent
        assert abs(teacher.video.frames_sent - room.video.last_counter) < 15
        assert room.audio.samples > 0
    stats = relay.stats()
    lesson = stats["lessons"]["L1"]
    assert stats["publishers"] == 1 and stats["subscribers"] == 2
    assert lesson["renditions"][0]["subscribers"] == 2
    # encoded once for both classrooms
    assert lesson["renditions"][0]["frames_encoded"] <= teacher.video.frames_sent
    assert latency_count("audio") > audio_before and latency_count("video") > video_before
    assert ("L1", True) in events.publisher
    assert "connected" in events.states_of("c1") and "connected" in events.states_of("teacher")
    for room in rooms:
        await room.close()
    await teacher.close()


async def test_late_joiner_gets_video_within_2s_from_an_unwatched_rendition(make_relay) -> None:
    # no periodic keyframe to lean on: the join itself must produce one
    relay = make_relay(keyframe_interval=60.0)
    teacher = await publish(relay, "L2")
    await wait_until(lambda: relay.stats()["lessons"]["L2"]["renditions"][0]["frames_encoded"]
                     >= 30, 10, "teacher media flowing and encoded with nobody watching")

    first = await subscribe(relay, "L2", "c1")
    await wait_until(lambda: first.video.frames >= 1, 2.0, "first classroom's first frame")
    await wait_until(lambda: first.video.frames >= 45, 10, "first classroom streaming")

    late = await subscribe(relay, "L2", "late")
    await wait_until(lambda: late.video.frames >= 1, 2.0, "late joiner's first decoded frame")
    assert late.video.first_frame_at - late.joined_at < 2.0
    await wait_until(lambda: late.audio.frames >= 10, 2.0, "late joiner's audio")
    for room in (first, late):
        await room.close()
    await teacher.close()
    await relay.close()


async def test_teacher_reconnect_keeps_classrooms_receiving(relay: Relay, events) -> None:
    teacher = await publish(relay, "L3", "teacher-a")
    room = await subscribe(relay, "L3", "c1")
    await wait_until(lambda: room.video.frames >= 30, 10, "video before reconnect")

    # the teacher's browser reconnects: a new peer publishes, the old one is gone
    teacher2 = await publish(relay, "L3", "teacher-b")
    await teacher.close()
    before_video, before_audio = room.video.frames, room.audio.frames
    await wait_until(lambda: room.video.frames >= before_video + 30, 10, "video after reconnect")
    await wait_until(lambda: room.audio.frames >= before_audio + 50, 10, "audio after reconnect")
    # the pictures come from the new source (its frame counter started again at 0)
    assert room.video.last_counter is not None
    assert room.video.last_counter <= teacher2.video.frames_sent + 1
    assert room.pc.connectionState == "connected"
    lesson = relay.stats()["lessons"]["L3"]
    assert lesson["publisher"]["peer_id"] == "teacher-b"
    assert "c1" in lesson["subscribers"]

    # the same peer id publishing again replaces itself too
    teacher3 = await publish(relay, "L3", "teacher-b")
    await teacher2.close()
    before_video = room.video.frames
    await wait_until(lambda: room.video.frames >= before_video + 30, 10,
                     "video after 2nd reconnect")
    assert events.publisher[-1] == ("L3", True)
    await room.close()
    await teacher3.close()


def _media_ssrc(receiver: RTCRtpReceiver) -> int:
    sources = receiver.getSynchronizationSources()
    assert sources, "no RTP received yet"
    return sources[0].source


async def test_pli_yields_a_rate_limited_keyframe(make_relay) -> None:
    relay = make_relay(keyframe_interval=60.0, keyframe_min_gap=0.5)
    teacher = await publish(relay, "L4")
    room = await subscribe(relay, "L4", "c1")
    await wait_until(lambda: room.video.frames >= 20, 10, "video flowing")
    await asyncio.sleep(0.6)  # let the join keyframe's rate-limit window pass

    def keyframes() -> int:
        return relay.stats()["lessons"]["L4"]["renditions"][0]["keyframes"]

    receiver = next(r for r in room.pc.getReceivers() if r.track.kind == "video")
    ssrc = _media_ssrc(receiver)
    start_keyframes, start_received = keyframes(), room.keyframes
    started = time.monotonic()
    for _ in range(10):  # a burst of PLIs within ~100 ms
        await receiver._send_rtcp_pli(ssrc)
        await asyncio.sleep(0.01)
    await wait_until(lambda: keyframes() > start_keyframes, 1.0, "keyframe after PLI")
    await wait_until(lambda: room.keyframes > start_received, 1.0, "keyframe decoded")
    elapsed = time.monotonic() - started
    # ten requests, at most one keyframe per 0.5 s window
    assert keyframes() - start_keyframes <= 1 + int(elapsed / 0.5)
    await asyncio.sleep(0.7)
    assert keyframes() - start_keyframes <= 2
    stats = relay.stats()["lessons"]["L4"]["subscribers"]["c1"]
    assert stats["keyframe_requests"] >= 10
    await room.close()
    await teacher.close()
    await relay.close()


async def test_same_peer_subscribing_again_replaces_the_first(relay: Relay) -> None:
    teacher = await publish(relay, "L5")
    first = await subscribe(relay, "L5", "c1")
    await wait_until(lambda: first.video.frames >= 5, 10, "first connection receiving")
    second = await subscribe(relay, "L5", "c1")
    await wait_until(lambda: second.video.frames >= 5, 5, "second connection receiving")
    stats = relay.stats()
    assert stats["subscribers"] == 1
    await wait_until(lambda: first.pc.connectionState == "closed", 5, "first connection closed")
    for peer in (first, second, teacher):
        await peer.close()


async def test_no_publisher_media_means_no_encoding(relay: Relay) -> None:
    def encoded() -> int:
        return relay.stats()["lessons"]["L6"]["renditions"][0]["frames_encoded"]

    room = await subscribe(relay, "L6", "c1")  # a classroom waits for the teacher
    await wait_until(lambda: room.pc.connectionState == "connected", 10, "classroom connected")
    await asyncio.sleep(0.5)
    assert encoded() == 0
    teacher = await publish(relay, "L6")
    await wait_until(lambda: room.video.frames >= 10, 10, "video once the teacher publishes")
    await relay.remove_peer("teacher")
    await asyncio.sleep(0.3)  # frames already in the media thread may still come out
    stopped = encoded()
    await asyncio.sleep(0.5)
    assert encoded() == stopped
    await teacher.close()
    await room.close()
