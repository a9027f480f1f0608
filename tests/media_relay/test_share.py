"""The teacher's screen share: its own feed, and priority over the camera (docs/two-way.md)."""

from __future__ import annotations

from aiortc import RTCSessionDescription

from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from media_relay import Relay
from media_relay.ladder_spec import DEFAULT_LADDER
from media_relay.priority import video_plan

from .peers import new_pc, subscribe, subscribe_lines, wait_until


def test_share_priority_mapping() -> None:
    ladder = DEFAULT_LADDER
    # without a share the camera gets the subscriber's tier
    assert [video_plan(ladder, t, False) for t in ladder.names] == [
        ("high", None), ("mid", None), ("low", None), (None, None)]
    # with one: share at the tier, camera one lower, paused at low, nothing on audio-only
    assert [video_plan(ladder, t, True) for t in ladder.names] == [
        ("mid", "high"), ("low", "mid"), (None, "low"), (None, None)]


async def publish_with_share(relay: Relay, lesson: str, peer_id: str,
                             share: bool = True) -> object:
    pc = new_pc(max_bundle=True)
    pc.addTransceiver(SyntheticVideoTrack(640, 360), direction="sendonly")
    if share:
        pc.addTransceiver(SyntheticVideoTrack(448, 252, fps=10), direction="sendonly")
    pc.addTransceiver(SyntheticAudioTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.publish(lesson, peer_id, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc


def subscriber(relay: Relay, lesson: str, peer_id: str) -> dict:
    return relay.stats()["lessons"][lesson]["subscribers"][peer_id]


async def test_share_goes_first_and_the_camera_gives_way(make_relay) -> None:
    relay: Relay = make_relay(rate_control=False)
    teacher = await publish_with_share(relay, "H1", "teacher/publish")
    viewer = await subscribe_lines(relay, "H1", "v/subscribe", ("camera", "share", "audio"))
    old = await subscribe(relay, "H1", "old/subscribe", read_counter=False)  # 1 video + 1 audio
    await wait_until(lambda: viewer["share"].frames >= 5 and viewer["camera"].frames >= 10
                     and old.video.frames >= 10, 15, "share and camera decoding")
    stats = subscriber(relay, "H1", "v/subscribe")
    assert (stats["share_tier"], stats["camera_tier"]) == ("high", "mid")
    assert viewer["share"].size == (448, 252)  # never scaled up
    assert subscriber(relay, "H1", "old/subscribe")["camera_tier"] == "high"  # no share line
    share = relay.stats()["lessons"]["H1"]["share"]
    assert share["active"] and [r["tier"] for r in share["renditions"]] == ["high"]

    # a thin link (the low-bandwidth button: at most low): slides stay, the face pauses
    relay.set_low_bandwidth("v/subscribe", True)
    stats = subscriber(relay, "H1", "v/subscribe")
    assert (stats["share_tier"], stats["camera_tier"]) == ("low", None)
    await wait_until(lambda: viewer["share"].size == (320, 180), 5, "share at the low tier")
    camera, slides = viewer["camera"].frames, viewer["share"].frames
    audio = viewer["audio"].frames
    await wait_until(lambda: viewer["share"].frames >= slides + 10
                     and viewer["audio"].frames >= audio + 50, 10, "share and audio flow")
    assert viewer["camera"].frames <= camera + 2

    # the teacher stops sharing (publishes again without it): the camera comes back at low
    await teacher.close()
    teacher = await publish_with_share(relay, "H1", "teacher/publish", share=False)
    stats = subscriber(relay, "H1", "v/subscribe")
    assert (stats["share_tier"], stats["camera_tier"]) == (None, "low")
    assert not relay.stats()["lessons"]["H1"]["share"]["active"]
    camera = viewer["camera"].frames
    await wait_until(lambda: viewer["camera"].frames >= camera + 10, 10, "camera back")
    assert viewer["camera"].size == (320, 180)
    for peer in (viewer, old):
        await peer.close()
    await teacher.close()


async def test_share_toggled_in_place_without_republishing(make_relay) -> None:
    """The page keeps the share's m-line in its publish and swaps the track; the relay
    follows ``share {on}`` (Relay.set_share), so the camera is never re-published."""
    relay: Relay = make_relay(rate_control=False)
    relay.set_share("H2", False)  # the page says "not sharing" before it publishes
    teacher = await publish_with_share(relay, "H2", "teacher/publish")
    viewer = await subscribe_lines(relay, "H2", "v/subscribe", ("camera", "share", "audio"))
    await wait_until(lambda: viewer["camera"].frames >= 10, 15, "camera decoding")
    stats = subscriber(relay, "H2", "v/subscribe")
    assert (stats["share_tier"], stats["camera_tier"]) == (None, "high")
    assert not relay.stats()["lessons"]["H2"]["share"]["active"]
    relay.set_share("H2", True)  # share starts on the same connection
    stats = subscriber(relay, "H2", "v/subscribe")
    assert (stats["share_tier"], stats["camera_tier"]) == ("high", "mid")
    await wait_until(lambda: viewer["share"].frames >= 5, 15, "share decoding")
    relay.set_share("H2", False)
    stats = subscriber(relay, "H2", "v/subscribe")
    assert (stats["share_tier"], stats["camera_tier"]) == (None, "high")
    camera = viewer["camera"].frames
    await wait_until(lambda: viewer["camera"].frames >= camera + 10, 10, "camera goes on")
    for peer in (viewer, teacher):
        await peer.close()
