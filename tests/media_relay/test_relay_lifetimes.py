"""Lifetimes: closing a lesson or losing a peer leaves no task, thread, track or gauge behind."""

from __future__ import annotations

import asyncio
import threading

from aiortc import RTCSessionDescription
from prometheus_client import REGISTRY

from media_relay import Relay

from .peers import new_pc, publish, subscribe, wait_until


def subscribers_gauge() -> float:
    return REGISTRY.get_sample_value("classroom_subscribers", {"tier": "high"}) or 0.0


def publishers_gauge() -> float:
    return REGISTRY.get_sample_value("classroom_relay_publishers") or 0.0


def own_threads() -> int:
    """Live threads except the event loop's default executor (shared, long-lived)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def other_tasks(baseline: set[asyncio.Task]) -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t not in baseline and not t.done()} - {
        asyncio.current_task()}


async def test_close_lesson_leaves_nothing_behind(make_relay, events) -> None:
    baseline_tasks = set(asyncio.all_tasks())
    baseline_threads = own_threads()
    relay: Relay = make_relay()
    teacher = await publish(relay, "L1")
    rooms = [await subscribe(relay, "L1", f"c{i}") for i in range(2)]
    await wait_until(lambda: all(r.video.frames >= 10 for r in rooms), 10, "media flowing")
    assert subscribers_gauge() == 2 and publishers_gauge() == 1

    await relay.close_lesson("L1")
    assert relay.stats() == {"lessons": {}, "publishers": 0, "subscribers": 0,
                             "uplinks": 0, "grids": 0,
                             "frames_encoded": 0, "keyframes": 0, "tiers": {}}
    assert subscribers_gauge() == 0 and publishers_gauge() == 0
    assert ("L1", False) in events.publisher
    # the relay closed its side: the clients see their connections close
    await wait_until(lambda: all(r.pc.connectionState == "closed" for r in rooms), 10,
                     "classrooms see the close")
    for peer in (*rooms, teacher):
        await peer.close()
    await relay.close()
    await wait_until(lambda: not other_tasks(baseline_tasks), 10, "no task left")
    # decoder threads (aiortc) and the encoder thread (rendition) end with their objects
    await wait_until(lambda: own_threads() <= baseline_threads, 5, "no thread left")


async def test_vanished_subscriber_is_cleaned_up(make_relay, events) -> None:
    relay: Relay = make_relay()
    teacher = await publish(relay, "L2")
    stays = await subscribe(relay, "L2", "stays")
    leaves = await subscribe(relay, "L2", "leaves")
    await wait_until(lambda: leaves.video.frames >= 10 and stays.video.frames >= 10, 10, "media")
    assert subscribers_gauge() == 2

    await leaves.close()  # the classroom goes away without telling signaling
    await wait_until(lambda: "leaves" not in relay.stats()["lessons"]["L2"]["subscribers"], 10,
                     "relay drops the vanished subscriber")
    assert "closed" in events.states_of("leaves")
    assert subscribers_gauge() == 1 and relay.stats()["subscribers"] == 1
    before = stays.video.frames
    await wait_until(lambda: stays.video.frames >= before + 15, 5, "the other classroom goes on")

    await stays.close()
    await teacher.close()
    await wait_until(lambda: not relay.stats()["lessons"], 10, "empty lesson removed")
    assert subscribers_gauge() == 0 and publishers_gauge() == 0
    await relay.close()


async def test_peer_that_never_connects_is_dropped(make_relay, events) -> None:
    baseline_tasks = set(asyncio.all_tasks())
    relay: Relay = make_relay(connect_timeout=1.0)
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    await relay.subscribe("L3", "ghost", pc.localDescription.sdp)
    await pc.close()  # never applies the answer: ICE never starts
    await wait_until(lambda: not relay.stats()["lessons"], 5, "ghost removed")
    assert "failed" in events.states_of("ghost")
    assert subscribers_gauge() == 0
    await relay.close()
    await wait_until(lambda: not other_tasks(baseline_tasks), 10, "no task left")


async def test_teacher_leaving_keeps_the_lesson_for_classrooms(make_relay, events) -> None:
    relay: Relay = make_relay(media_timeout=0.5)
    teacher = await publish(relay, "L4")
    room = await subscribe(relay, "L4", "c1")
    await wait_until(lambda: room.video.frames >= 10, 10, "media")
    await relay.remove_peer("teacher")
    assert events.publisher[-1] == ("L4", False)
    stats = relay.stats()
    assert stats["lessons"]["L4"]["publisher"] is None and stats["subscribers"] == 1
    teacher2 = await publish(relay, "L4", "teacher")
    before = room.video.frames
    await wait_until(lambda: room.video.frames >= before + 10, 10,
                     "media after the teacher returns")
    await teacher.close()
    # media stopping without a close is reported after media_timeout
    teacher2.video.stop()
    teacher2.audio.stop()
    await wait_until(lambda: events.publisher[-1] == ("L4", False), 5, "publisher inactive")
    await room.close()
    await teacher2.close()
    await relay.close()


async def test_relay_close_closes_everything(make_relay) -> None:
    relay: Relay = make_relay()
    teacher = await publish(relay, "L5")
    room = await subscribe(relay, "L5", "c1")
    await wait_until(lambda: room.video.frames >= 5, 10, "media")
    await relay.close()
    assert relay.stats()["lessons"] == {}
    assert subscribers_gauge() == 0
    await wait_until(lambda: room.pc.connectionState == "closed", 10, "classroom closed")
    await room.close()
    await teacher.close()


async def test_answer_is_usable_sdp(relay: Relay) -> None:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.subscribe("L6", "c1", pc.localDescription.sdp)
    assert "m=video" in answer and "VP8/90000" in answer and "a=sendonly" in answer
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await pc.close()
