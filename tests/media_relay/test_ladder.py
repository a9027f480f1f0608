"""The ladder with real aiortc peers: tiers per classroom, encoded only while in use."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from media_relay import Relay
from media_relay.rate_control import ControllerConfig

from .peers import publish, subscribe, wait_until

# The climbs back to high are the relay's real probes over real RTCP; the controller's
# timing (unit-tested in test_rate_control) is cut so each climb takes ~2 s, not ~8 s:
# a shorter clean hold before the first probe, shorter probes and steps. Still two clean
# receiver reports per probe (probe_reports), padding to the next tier's rate.
QUICK_CLIMB = ControllerConfig(probe_with_media=False, hold=1.0, probe_duration=1.0,
                               step_hold=0.5)


def switches(direction: str) -> float:
    return REGISTRY.get_sample_value("classroom_tier_switches_total",
                                     {"direction": direction}) or 0.0


def renditions(relay: Relay, lesson: str) -> dict[str, dict]:
    return {r["tier"]: r for r in relay.stats()["lessons"][lesson]["renditions"]}


async def test_low_bandwidth_moves_one_classroom_to_low_the_other_stays_high(
        make_relay, events) -> None:
    tiers = events.tiers  # (lesson, peer, tier, reason, direction) from the relay's listener
    relay = make_relay(controller=QUICK_CLIMB)
    downs = switches("down")
    teacher = await publish(relay, "LB", width=640, height=360)
    rooms = [await subscribe(relay, "LB", p, read_counter=False) for p in ("c1", "c2")]
    await wait_until(lambda: all(r.video.frames >= 15 and r.video.size == (640, 360)
                                 for r in rooms), 10, "both classrooms on high")
    assert relay.stats()["lessons"]["LB"]["tiers_in_use"] == ["high"]
    assert set(renditions(relay, "LB")) == {"high"}  # nobody on mid or low: not even created

    relay.set_low_bandwidth("c2", True)
    assert relay.tier_of("c2") == "low" and relay.tier_of("c1") == "high"
    assert ("LB", "c2", "low", "manual", "down") in tiers
    assert switches("down") == downs + 1
    frames = rooms[0].video.frames
    await wait_until(lambda: rooms[1].video.size == (320, 180), 5, "c2 decoding 320x180")
    await wait_until(lambda: rooms[0].video.frames >= frames + 30, 5, "c1 still streaming")
    assert rooms[0].video.size == (640, 360)
    stats = renditions(relay, "LB")
    assert stats["low"]["size"] == [320, 180] and stats["low"]["subscribers"] == 1
    assert stats["high"]["subscribers"] == 1
    assert "mid" not in stats
    # low runs at 15 fps: about half the frames of high since it started
    low_before, high_before = stats["low"]["frames_encoded"], stats["high"]["frames_encoded"]
    before = rooms[1].video.frames
    await wait_until(lambda: rooms[1].video.frames >= before + 20, 5, "c2 streaming on low")
    stats = renditions(relay, "LB")
    low_n = stats["low"]["frames_encoded"] - low_before
    high_n = stats["high"]["frames_encoded"] - high_before
    assert 0.3 * high_n <= low_n <= 0.7 * high_n, (low_n, high_n)

    # back up: the same RTP stream carries high again, and low is no longer encoded
    relay.set_low_bandwidth("c2", False)
    await wait_until(lambda: relay.tier_of("c2") == "high", 30, "c2 climbed back to high (probing)")
    await wait_until(lambda: rooms[1].video.size == (640, 360), 5, "c2 decoding 640x360")
    encoded = renditions(relay, "LB")["low"]["frames_encoded"]
    assert relay.stats()["lessons"]["LB"]["tiers_in_use"] == ["high"]
    before = rooms[1].video.frames
    await wait_until(lambda: rooms[1].video.frames >= before + 15, 5, "c2 streaming on high")
    assert renditions(relay, "LB")["low"]["frames_encoded"] <= encoded + 1
    for room in rooms:
        await room.close()
    await teacher.close()


async def test_school_cap_and_audio_only_tier(make_relay) -> None:
    relay = make_relay(controller=QUICK_CLIMB)
    teacher = await publish(relay, "LC", width=640, height=360)
    rural = await subscribe(relay, "LC", "r1", read_counter=False, school="village")
    town = await subscribe(relay, "LC", "t1", read_counter=False, school="town")
    await wait_until(lambda: rural.video.frames >= 15 and town.video.frames >= 15, 10,
                     "both streaming")
    # 600 kbit/s for the village school: mid (500 + 32 kbit/s) fits
    relay.set_cap("LC", "village", 600_000)
    assert relay.tier_of("r1") == "mid" and relay.tier_of("t1") == "high"
    await wait_until(lambda: renditions(relay, "LC").get("mid", {}).get("frames_encoded", 0)
                     >= 10, 5, "mid encoded")
    # a second village classroom halves the share: both on low
    rural2 = await subscribe(relay, "LC", "r2", read_counter=False, school="village")
    assert relay.tier_of("r1") == "low" and relay.tier_of("r2") == "low"
    await wait_until(lambda: rural.video.size == (320, 180), 5, "r1 decoding low")
    await wait_until(lambda: "mid" not in relay.stats()["lessons"]["LC"]["tiers_in_use"], 2,
                     "mid no longer in use")
    await rural2.close()
    await relay.remove_peer("r2")
    # 100 kbit/s: audio only; audio keeps flowing, video stops
    relay.set_cap("LC", "village", 100_000)
    assert relay.tier_of("r1") == "audio" and relay.tier_of("t1") == "high"
    await wait_until(lambda: relay.stats()["lessons"]["LC"]["tiers_in_use"] == ["high"], 2,
                     "only high in use")
    video, audio = rural.video.frames, rural.audio.frames
    town_video = town.video.frames
    await wait_until(lambda: rural.audio.frames >= audio + 100, 5, "audio on the audio tier")
    assert rural.video.frames <= video + 2
    assert town.video.frames > town_video + 30
    subscriber = relay.stats()["lessons"]["LC"]["subscribers"]["r1"]
    assert subscriber["tier"] == "audio" and subscriber["school"] == "village"
    # lifted: video comes back (a keyframe from high)
    relay.set_cap("LC", "village", None)
    await wait_until(lambda: relay.tier_of("r1") == "high", 30, "r1 climbed back to high")
    await wait_until(lambda: rural.video.frames >= video + 15 and rural.video.size == (640, 360),
                     5, "r1 video back")
    for room in (rural, town):
        await room.close()
    await teacher.close()


async def test_three_tiers_scale_the_same_frames_at_once(make_relay) -> None:
    # 960x540: high encodes the source frame itself, mid and low both scale it, in their
    # own threads at the same time (each with its own scaler)
    relay = make_relay()
    teacher = await publish(relay, "L3", width=960, height=540)
    rooms = {}
    for peer, school in (("h", None), ("m", "m-school"), ("lo", None)):
        rooms[peer] = await subscribe(relay, "L3", peer, read_counter=False, school=school)
    relay.set_cap("L3", "m-school", 600_000)
    relay.set_low_bandwidth("lo", True)
    expected = {"h": (960, 540), "m": (640, 360), "lo": (320, 180)}
    await wait_until(lambda: all(rooms[p].video.size == size for p, size in expected.items()),
                     10, "each classroom decoding its tier's size")
    before = {t: r["frames_encoded"] for t, r in renditions(relay, "L3").items()}
    frames = {p: r.video.frames for p, r in rooms.items()}
    await asyncio.sleep(2)
    after = renditions(relay, "L3")
    rates = {t: (after[t]["frames_encoded"] - before[t]) / 2 for t in before}
    assert rates["high"] > 20 and rates["mid"] > 20 and 9 < rates["low"] < 17, rates
    assert all(rooms[p].video.frames > frames[p] + 20 for p in rooms)
    assert relay.stats()["lessons"]["L3"]["tiers_in_use"] == ["high", "mid", "low"]
    for room in rooms.values():
        await room.close()
    await teacher.close()
