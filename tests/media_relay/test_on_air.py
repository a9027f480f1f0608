"""The on-air gate (docs/media.md): with ``on_air_gate`` a classroom subscriber gets nothing of
its lesson until ``set_on_air(lesson, True)``, then video from a keyframe made at once (no
waiting for the periodic one), and nothing again after ``set_on_air(lesson, False)``."""

from __future__ import annotations

import asyncio
import time

from .peers import open_grid, publish, publish_uplink, subscribe, subscribe_lines, wait_until


async def test_classrooms_get_media_only_on_air_and_a_keyframe_at_once(make_relay) -> None:
    # a 30 s GOP: a first frame soon after going live can only come from a forced keyframe
    relay = make_relay(on_air_gate=True, keyframe_interval=30.0)
    teacher = await publish(relay, "OA")
    room = await subscribe(relay, "OA", "c1")
    subscriber = relay.subscriber("c1")
    assert subscriber is not None
    await wait_until(lambda: room.pc.connectionState == "connected", 10, "classroom connected")
    await wait_until(lambda: relay.stats()["lessons"]["OA"]["renditions"][0]["frames_encoded"]
                     >= 30 and relay.stats()["lessons"]["OA"]["audio_packets"] >= 50, 10,
                     "teacher media arriving and encoded")
    await asyncio.sleep(1.0)  # off air for a while: nothing may arrive meanwhile
    assert (room.video.frames, room.audio.frames) == (0, 0)
    assert subscriber.bytes_sent() == 0
    assert subscriber.stats()["on_air"] is False and relay.stats()["lessons"]["OA"]["on_air"] \
        is False

    went_live = time.monotonic()
    relay.set_on_air("OA", True)
    await wait_until(lambda: room.video.frames >= 1, 1.5, "a first frame soon after going live")
    assert room.video.first_frame_at - went_live < 1.5
    assert room.keyframes >= 1
    await wait_until(lambda: room.video.frames >= 20 and room.audio.frames >= 50, 10,
                     "video and audio on air")

    relay.set_on_air("OA", False)
    await asyncio.sleep(0.5)  # what was in flight lands
    video, audio, sent = room.video.frames, room.audio.frames, subscriber.bytes_sent()
    await asyncio.sleep(1.0)
    assert (room.video.frames, room.audio.frames) == (video, audio)
    assert subscriber.bytes_sent() == sent
    # the teacher's media still reaches the relay (the recorder's rendition is not gated)
    encoded = relay.stats()["lessons"]["OA"]["renditions"][0]["frames_encoded"]
    await wait_until(lambda: relay.stats()["lessons"]["OA"]["renditions"][0]["frames_encoded"]
                     > encoded + 10, 5, "the top rendition still encoding off air")
    await room.close()
    await teacher.close()


async def test_on_air_is_remembered_for_a_lesson_built_later(make_relay) -> None:
    relay = make_relay(on_air_gate=True)
    assert relay.on_air("later") is False
    relay.set_on_air("later", True)
    teacher = await publish(relay, "later")
    room = await subscribe(relay, "later", "c1")
    await wait_until(lambda: room.video.frames >= 5 and room.audio.frames >= 10, 10,
                     "media in a lesson live before its first peer")
    relay.set_on_air("later", False)
    assert relay.on_air("later") is False and relay.stats()["lessons"]["later"]["on_air"] \
        is False
    await room.close()
    await teacher.close()
    ungated = make_relay()
    ungated.set_on_air("x", False)  # no gate: no effect
    assert ungated.on_air("x") is True


async def test_the_stage_reaches_other_classrooms_only_on_air(make_relay) -> None:
    """A classroom on stage before the start: the teacher's grid sees and hears it (the
    attendance check), the other classrooms get neither its video nor its sound."""
    relay = make_relay(on_air_gate=True, rate_control=False, keyframe_interval=30.0)
    speaker = await publish_uplink(relay, "OS", "a/uplink", width=320, height=180)
    viewer = await subscribe_lines(relay, "OS", "v/subscribe")
    grid = await open_grid(relay, "OS", slots=1)
    relay.set_stage("OS", "a/uplink")
    await wait_until(lambda: grid.slots[0].frames >= 5 and grid.audio.frames >= 25, 15,
                     "the stage classroom seen and heard on the teacher's grid")
    await asyncio.sleep(0.5)
    assert (viewer["stage_video"].frames, viewer["stage_audio"].frames) == (0, 0)
    assert relay.subscriber("v/subscribe").bytes_sent() == 0

    relay.set_on_air("OS", True)
    await wait_until(lambda: viewer["stage_video"].frames >= 1
                     and viewer["stage_audio"].frames >= 10, 3,
                     "the stage at the other classroom once live (a keyframe at once)")
    for peer in (viewer, grid, speaker):
        await peer.close()
