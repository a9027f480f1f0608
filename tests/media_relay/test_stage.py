"""The stage with real aiortc peers: subscribers decode the stage classroom's video and
hear its audio (not the stage classroom itself), switching to another classroom, mute,
clearing the stage; the switch time is measured."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from media_relay import Relay, RelayError

from .peers import open_grid, publish_uplink, subscribe_lines, wait_until
from .test_relay_lifetimes import other_tasks, own_threads


def stage(relay: Relay, lesson: str) -> dict:
    return relay.stage_stats(lesson)


async def test_stage_switching_reaches_every_subscriber(make_relay) -> None:
    # no teacher here: one process runs the relay and every peer (encoders and decoders)
    relay: Relay = make_relay(rate_control=False)
    room_a = await publish_uplink(relay, "S1", "a/uplink", width=320, height=180)
    room_b = await publish_uplink(relay, "S1", "b/uplink", width=640, height=360,
                                  frequency=660.0)
    viewer = await subscribe_lines(relay, "S1", "v/subscribe")
    own_a = await subscribe_lines(relay, "S1", "a/subscribe")
    grid = await open_grid(relay, "S1", slots=1)
    await wait_until(lambda: grid.slots[0].frames >= 5, 15, "uplink media flowing")
    assert viewer["stage_video"].frames == 0 and viewer["stage_audio"].frames == 0

    # call classroom a on stage: seen and heard by the other classroom and the teacher
    called = time.monotonic()
    relay.set_stage("S1", "a/uplink")
    await wait_until(lambda: viewer["stage_video"].frames >= 1, 5, "a's video at the viewer")
    first = time.monotonic() - called
    assert viewer["stage_video"].size == (320, 180)  # the low tier: no larger than the uplink
    await wait_until(lambda: viewer["stage_audio"].frames >= 25 and grid.audio.frames >= 25, 5,
                     "a's audio at the viewer and the teacher's grid")
    assert own_a["stage_audio"].frames == 0  # classroom a does not hear itself
    assert own_a["stage_video"].frames >= 1  # but it sees itself as the others do

    # switch the stage to classroom b (640x360: the mid tier for a viewer on high)
    before = viewer["stage_video"].frames
    called = time.monotonic()
    relay.set_stage("S1", "b/uplink")
    await wait_until(lambda: viewer["stage_video"].size == (640, 360)
                     and viewer["stage_video"].frames > before, 5, "b's video at the viewer")
    second = time.monotonic() - called
    heard = own_a["stage_audio"].frames
    await wait_until(lambda: own_a["stage_audio"].frames >= heard + 25, 5,
                     "classroom a now hears b")
    stats = stage(relay, "S1")
    print(f"stage switch -> first decoded frame at a classroom: {1000 * first:.0f} ms, "
          f"{1000 * second:.0f} ms; relay-side switch_ms {stats['switch_ms']}; "
          f"stage video forward {stats['video_forward']}; audio {stats['audio_forward']}")
    # target 1 s (~150-250 ms seen on this machine at load 15); the bound leaves room for a
    # machine shared with other jobs, and still fails when no keyframe is asked for (aiortc
    # then sends none: the switch never happens)
    assert first < 3.0 and second < 3.0
    assert stats["peer_id"] == "b/uplink" and stats["switches"] == 2
    assert len(stats["switch_ms"]) == 2 and all(ms < 3000 for ms in stats["switch_ms"])
    assert stats["video_forward"]["count"] > 0 and stats["audio_forward"]["count"] > 0
    tiers = [r["tier"] for r in stats["renditions"] if r["subscribers"]]
    assert tiers == ["mid"]  # encoded once for both classrooms, never above the uplink

    # the teacher mutes classroom b: its audio goes nowhere
    relay.set_uplink_muted("b/uplink", True)
    packets = stage(relay, "S1")["audio_packets"]
    received = next(u for u in relay.uplink_stats("S1") if u["peer_id"] == "b/uplink")
    await wait_until(lambda: next(u for u in relay.uplink_stats("S1")
                                  if u["peer_id"] == "b/uplink")["audio_packets_in"]
                     >= received["audio_packets_in"] + 25, 5, "b's audio still arrives")
    assert stage(relay, "S1")["audio_packets"] == packets
    assert next(u for u in relay.uplink_stats("S1") if u["peer_id"] == "b/uplink")["muted"]

    # clearing the stage: nothing more is decoded for it
    relay.set_stage("S1", None)
    frames_in = stage(relay, "S1")["frames_in"]
    viewed = grid.slots[0].frames
    await wait_until(lambda: grid.slots[0].frames > viewed + 10, 5, "uplinks still flow")
    assert stage(relay, "S1")["frames_in"] == frames_in
    assert stage(relay, "S1")["peer_id"] is None
    for peer in (viewer, own_a, grid, room_a, room_b):
        await peer.close()


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "sender-tasks"])
async def test_stage_remembered_until_the_uplink_connects(make_relay, batched: bool) -> None:
    relay: Relay = make_relay(rate_control=False, batched_send=batched)
    viewer = await subscribe_lines(relay, "S2", "v/subscribe")
    relay.set_stage("S2", "late/uplink")  # called on stage while its TV reconnects
    room = await publish_uplink(relay, "S2", "late/uplink", width=320, height=180)
    await wait_until(lambda: viewer["stage_video"].frames >= 5
                     and viewer["stage_audio"].frames >= 10, 10, "stage once it connected")
    assert len(relay.stage_stats("S2")["switch_ms"]) == 1
    # an old page: one video + one audio still works beside it
    await room.close()
    await viewer.close()


async def test_closing_a_two_way_lesson_leaves_nothing_behind(make_relay) -> None:
    baseline_tasks = set(asyncio.all_tasks())
    baseline_threads = own_threads()
    gauge_before = REGISTRY.get_sample_value("classroom_uplinks") or 0.0
    relay: Relay = make_relay(rate_control=False)
    room = await publish_uplink(relay, "S3", "a/uplink")
    viewer = await subscribe_lines(relay, "S3", "v/subscribe")
    grid = await open_grid(relay, "S3", slots=1)
    relay.set_stage("S3", "a/uplink")
    await wait_until(lambda: viewer["stage_video"].frames >= 3 and grid.slots[0].frames >= 3,
                     10, "stage and grid flowing")
    assert REGISTRY.get_sample_value("classroom_uplinks") == gauge_before + 1
    await relay.close_lesson("S3")
    stats = relay.stats()
    assert stats["lessons"] == {} and stats["uplinks"] == 0 and stats["grids"] == 0
    assert REGISTRY.get_sample_value("classroom_uplinks") == gauge_before
    assert relay.uplink_stats("S3") == [] and relay.stage_stats("S3") == {}
    for peer in (viewer, grid, room):
        await peer.close()
    await relay.close()
    await wait_until(lambda: not other_tasks(baseline_tasks), 10, "no task left")
    await wait_until(lambda: own_threads() <= baseline_threads, 5, "no thread left")


async def test_bad_arguments_get_a_reason(relay: Relay) -> None:
    for call in (lambda: relay.set_stage("S4", 42),  # type: ignore[arg-type]
                 lambda: relay.set_stage("", "a/uplink"),
                 lambda: relay.set_uplink_muted(None, True),  # type: ignore[arg-type]
                 lambda: relay.set_grid_view("g", [1, 2])):  # type: ignore[list-item]
        with pytest.raises(RelayError) as info:
            call()
        assert info.value.reason == "bad_request"
    with pytest.raises(RelayError) as info:
        await relay.subscribe_grid("S4", "g", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
    assert info.value.reason == "bad_sdp"
    offer = "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 4
    with pytest.raises(RelayError) as info:
        await relay.subscribe("S4", "v", offer)
    assert info.value.reason == "bad_sdp"


async def test_rate_budget_counts_the_stage_and_the_share(make_relay) -> None:
    """A two-way classroom's link carries the camera, the share, the stage and two audio
    lines: the rate controller's budget per tier is all of them (Subscriber.required)."""
    from media_relay.ladder_spec import DEFAULT_LADDER as ladder

    relay: Relay = make_relay()  # rate control on
    room = await publish_uplink(relay, "S4", "a/uplink", width=640, height=360)
    viewer = await subscribe_lines(relay, "S4", "v/subscribe")
    own = await subscribe_lines(relay, "S4", "a/subscribe")  # the classroom that goes on stage

    def budget(peer: str = "v/subscribe") -> int:
        stats = relay.stats()["lessons"]["S4"]["subscribers"][peer]
        return stats["rate_control"]["budget"]

    await wait_until(lambda: "v/subscribe" in relay.stats()["lessons"]["S4"]["subscribers"],
                     10, "subscriber attached")
    tier = relay.stats()["lessons"]["S4"]["subscribers"]["v/subscribe"]["tier"]
    assert budget() == ladder.required(tier)  # camera + teacher audio only
    relay.set_stage("S4", "a/uplink")
    await wait_until(lambda: budget() > ladder.required(tier), 10, "stage counted")
    stage_tier = ladder.lower_of(tier, "mid")  # no larger than the 640x360 uplink
    assert budget() == int((ladder.spec(tier).video_bitrate
                            + ladder.spec(stage_tier).video_bitrate
                            + 2 * ladder.audio_bitrate) * ladder.overhead)
    # a probe pads up to the probed tier's budget from the current one (every line counted)
    from media_relay.rate_control import Decision

    sub = relay._lessons["S4"].subscribers["v/subscribe"]
    relay.set_low_bandwidth("v/subscribe", True)  # on low, so that there is a tier above
    assert sub.tier == "low"
    sub._pad_for_probe(Decision(tier="low", probe_tier="mid", probe_bitrate=sub.required("mid")))
    assert sub.streams["video"].padding_bitrate == sub.required("mid") - sub.required("low")
    assert sub.required("mid") - sub.required("low") > ladder.required("mid") - ladder.required(
        "low")  # the stage's own step from low to mid is in the padding too
    sub._pad_for_probe(Decision(tier="low"))
    relay.set_low_bandwidth("v/subscribe", False)
    # the classroom on stage sees itself but does not hear itself: one audio line
    assert budget("a/subscribe") == int((ladder.spec(tier).video_bitrate
                                         + ladder.spec(stage_tier).video_bitrate
                                         + ladder.audio_bitrate) * ladder.overhead)
    relay.set_stage("S4", None)

    def camera_only() -> bool:  # (the viewer may still be climbing back from low)
        control = relay.stats()["lessons"]["S4"]["subscribers"]["v/subscribe"]["rate_control"]
        return control["budget"] == ladder.required(control["tier"])

    await wait_until(camera_only, 10, "stage gone")
    for peer in (viewer, own, room):
        await peer.close()


def test_budget_under_a_cap_moves_the_classroom_down() -> None:
    from media_relay.ladder_spec import DEFAULT_LADDER as ladder
    from media_relay.rate_control import RateController

    ctl = RateController(cap=ladder.required("high") + 100_000)
    assert ctl.tier == "high"
    decision = ctl.set_budget(1.0, lambda tier: 2 * ladder.required(tier))
    assert decision.changed and ctl.tier == "mid" and decision.reason == "lines"
    assert ctl.best_fitting(2 * ladder.required("low")) == "low"
    ctl.set_budget(2.0, None)  # back to the ladder's own budget: no longer limited
    assert ctl.limit_tier() == "high"
