"""H.264-only classrooms (old TV boxes): their tier encoded once in H.264, only while needed.

Through the real server with the headless client: one classroom offers only H.264
(constrained baseline 42e01f, packetization-mode 1), another the default (VP8 first).
"""

from __future__ import annotations

import threading

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from prometheus_client import REGISTRY

from classroom_client import ClassroomClient
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack, receive_codecs
from media_relay import RelayError
from media_relay.sdp import subscribe_codecs
from tests.helpers import eventually, start_server


def h264_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-h264") and t.is_alive()]


def pli_keyframes() -> float:
    return REGISTRY.get_sample_value("classroom_relay_keyframes_total", {"reason": "pli"}) or 0.0


def negotiated(client: ClassroomClient) -> str:
    pc = client.pcs["subscribe"]
    video = next(t for t in pc.getTransceivers() if t.kind == "video")
    return video._codecs[0].mimeType


@pytest.fixture
async def server():
    srv = await start_server()
    yield srv
    await srv.close()


async def test_h264_classroom_beside_a_vp8_one_switches_tiers_and_gets_keyframes(server):
    relay = server.node.relay
    teacher = ClassroomClient(server.base_url, server.token("teacher", "h1", name="T"))
    await teacher.connect()
    await teacher.publish(SyntheticVideoTrack(640, 360), SyntheticAudioTrack())
    await teacher.start_lesson()
    vp8 = ClassroomClient(server.base_url, server.token("classroom", "h1", name="vp8"))
    await vp8.connect()
    await vp8.subscribe()
    await vp8.wait_for(lambda: vp8.video_frames >= 10, timeout=20)
    lesson = lambda: relay.stats()["lessons"]["h1"]  # noqa: E731
    assert lesson()["h264"]["tiers"] == [] and not h264_threads()  # nobody needs H.264 yet

    tv = ClassroomClient(server.base_url, server.token("classroom", "h1", name="tv",
                                                       school="village"), video_codec="h264")
    await tv.connect()
    await tv.subscribe()
    try:
        await tv.wait_for(lambda: tv.video_frames >= 15 and tv.video_size == (640, 360),
                          timeout=20)
    except TimeoutError:
        raise AssertionError(lesson()) from None
    assert negotiated(tv) == "video/H264" and negotiated(vp8) == "video/VP8"
    subs = lesson()["subscribers"]
    tv_id, vp8_id = f"{tv.peer_id}/subscribe", f"{vp8.peer_id}/subscribe"
    assert subs[tv_id]["video_codec"] == "H264" and subs[vp8_id]["video_codec"] == "VP8"
    assert lesson()["h264"]["tiers"] == ["high"] and lesson()["tiers_in_use"] == ["high"]
    assert len(h264_threads()) == 1
    assert tv.video_keyframes >= 1  # the join keyframe (an IDR the decoder started on)

    # PLI from the TV: the shared H.264 encoder sends an IDR for it
    h264_high = lesson()["h264"]["renditions"][0]
    vp8_high = next(r for r in lesson()["renditions"] if r["tier"] == "high")
    keys, plis = tv.video_keyframes, pli_keyframes()
    requests = lesson()["subscribers"][tv_id]["video"]["keyframe_requests"]
    receiver = next(t for t in tv.pcs["subscribe"].getTransceivers() if t.kind == "video").receiver
    ssrc = receiver.getSynchronizationSources()[0].source
    await receiver._send_rtcp_pli(ssrc)
    await tv.wait_for(lambda: tv.video_keyframes > keys, timeout=5)
    assert lesson()["h264"]["renditions"][0]["keyframes"] > h264_high["keyframes"]
    assert lesson()["subscribers"][tv_id]["video"]["keyframe_requests"] == requests + 1
    assert pli_keyframes() >= plis + 1  # made for the PLI, not the 2 s periodic one

    # a school cap that fits mid, then the low-bandwidth button: the TV follows the tiers
    # in H.264; the H.264 encoder of the tier it left stops
    headers = {"Authorization": "Bearer " + server.token("teacher", "h1")}
    async with aiohttp.ClientSession() as http:
        r = await http.post(server.base_url + "/api/lessons/h1/caps",
                            json={"school": "village", "kbps": 600}, headers=headers)
        assert r.status == 200, await r.text()
    assert relay.tier_of(tv_id) == "mid"
    keys = tv.video_keyframes
    await eventually(lambda: lesson()["h264"]["tiers"] == ["mid"], 5)
    await tv.wait_for(lambda: tv.video_keyframes > keys, timeout=5)  # the switch keyframe
    frames = tv.video_frames
    await tv.wait_for(lambda: tv.video_frames >= frames + 10, timeout=5)
    assert lesson()["h264"]["renditions"][0]["bitrate"] == 500_000

    await tv.send({"type": "low-bandwidth", "on": True})
    await tv.wait_for(lambda: tv.video_size == (320, 180), timeout=10)
    assert relay.tier_of(tv_id) == "low"
    assert lesson()["h264"]["tiers"] == ["low"]
    frames = tv.video_frames
    await tv.wait_for(lambda: tv.video_frames >= frames + 10, timeout=5)
    await eventually(lambda: len(h264_threads()) == 1, 3)  # high's and mid's have ended

    # the VP8 classroom stayed on VP8 high throughout, and VP8 high kept the recorder's feed
    assert relay.tier_of(vp8_id) == "high" and vp8.video_size == (640, 360)
    assert "low" not in lesson()["tiers_in_use"]  # nobody on VP8 low: not encoded
    assert next(r for r in lesson()["renditions"] if r["tier"] == "high")[
        "frames_encoded"] > vp8_high["frames_encoded"]

    # the TV leaves: no H.264 encoder runs any more; VP8 goes on
    await tv.close()
    await eventually(lambda: lesson()["h264"]["tiers"] == [] and not h264_threads(), 5)
    assert lesson()["h264"]["started"] == 3 == lesson()["h264"]["stopped"]
    frames = vp8.video_frames
    await vp8.wait_for(lambda: vp8.video_frames >= frames + 10, timeout=5)
    for c in (vp8, teacher):
        await c.close()


async def _offer(codec: str | None) -> str:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    if codec:
        transceiver.setCodecPreferences(receive_codecs(codec))
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_offer_codec_choice_and_unusable_h264(make_relay):
    assert subscribe_codecs(await _offer(None), ["video", "audio"]) == ["VP8", "opus"]
    h264_only = await _offer("h264")
    assert "VP8" not in h264_only
    assert subscribe_codecs(h264_only, ["video", "audio"]) == ["H264", "opus"]
    # H.264 the relay does not encode (packetization-mode 0): a clear bad_sdp, no peer left
    relay = make_relay()
    bad = h264_only.replace("packetization-mode=1", "packetization-mode=0")
    with pytest.raises(RelayError) as caught:
        await relay.subscribe("L", "tv", bad)
    assert caught.value.reason == RelayError.BAD_SDP
    assert "VP8 or H.264" in str(caught.value)
    assert relay.stats()["subscribers"] == 0


async def test_h264_answer_is_accepted_by_an_h264_only_peer(make_relay):
    relay = make_relay()
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly").setCodecPreferences(receive_codecs("h264"))
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.subscribe("L", "tv", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    assert "H264/90000" in answer and "VP8" not in answer
    assert "packetization-mode=1" in answer and "42e01f" in answer
    await pc.close()


async def h264_viewer(relay, lesson: str, peer_id: str, purposes: tuple[str, ...]):
    """A classroom whose every video line offers only H.264: (pc, FrameCounter by purpose)."""
    from classroom_client.media import FrameCounter

    from .peers import new_pc

    pc = new_pc(max_bundle=True)
    lines = {}
    for purpose in purposes:
        audio = purpose in ("audio", "stage_audio")
        t = pc.addTransceiver("audio" if audio else "video", direction="recvonly")
        if not audio:
            t.setCodecPreferences(receive_codecs("h264"))
        lines[purpose] = t
    await pc.setLocalDescription(await pc.createOffer())
    answer = await relay.subscribe(lesson, peer_id, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, {p: FrameCounter(t.receiver.track) for p, t in lines.items()}


async def leave(relay, peer_id: str, pc, counters: dict) -> None:
    for counter in counters.values():
        await counter.stop()
    await pc.close()
    await relay.remove_peer(peer_id)  # what the signaling does when a classroom leaves


async def test_h264_share_line_and_camera_line(make_relay):
    """The teacher's share follows the same rule: an H.264 classroom gets it in H.264 from
    an H.264 share rendition that runs only while it is there."""
    from .test_share import publish_with_share

    relay = make_relay(rate_control=False)
    teacher = await publish_with_share(relay, "H2", "teacher/publish")
    pc, counters = await h264_viewer(relay, "H2", "tv/subscribe", ("camera", "share", "audio"))
    lesson = lambda: relay.stats()["lessons"]["H2"]  # noqa: E731
    await eventually(lambda: counters["share"].frames >= 5 and counters["camera"].frames >= 10,
                     15)
    assert counters["share"].size == (448, 252) and counters["camera"].size == (640, 360)
    stats = lesson()["subscribers"]["tv/subscribe"]
    assert (stats["share_tier"], stats["camera_tier"]) == ("high", "mid")
    assert [(r["tier"], r["codec"]) for r in lesson()["share"]["renditions"]] == [
        ("high", "H264")]
    assert lesson()["h264"]["tiers"] == ["mid"]
    await leave(relay, "tv/subscribe", pc, counters)
    assert "tv/subscribe" not in lesson()["subscribers"]
    assert lesson()["h264"]["tiers"] == [] and lesson()["share"]["renditions"] == []
    await eventually(lambda: not h264_threads(), 5)
    await teacher.close()


async def test_h264_stage_line(make_relay):
    """The classroom on stage reaches an H.264 classroom's stage line in H.264 (tier no
    larger than the uplink: low for a 320x180 uplink), and a PLI on it gets an IDR."""
    from .peers import publish_uplink

    relay = make_relay(rate_control=False, keyframe_interval=60.0)  # no periodic keyframes
    room = await publish_uplink(relay, "H3", "a/uplink", width=320, height=180)
    pc, counters = await h264_viewer(relay, "H3", "tv/subscribe",
                                     ("camera", "share", "stage_video", "audio",
                                      "stage_audio"))
    relay.set_stage("H3", "a/uplink")
    await eventually(lambda: counters["stage_video"].frames >= 10
                     and counters["stage_audio"].frames >= 25, 15)
    assert counters["stage_video"].size == (320, 180)
    renditions = relay.stage_stats("H3")["renditions"]
    assert [(r["tier"], r["codec"]) for r in renditions] == [("low", "H264")]
    keys, plis = renditions[0]["keyframes"], pli_keyframes()
    video = next(t for t in pc.getTransceivers() if t.mid == "2")  # the stage video line
    await video.receiver._send_rtcp_pli(video.receiver.getSynchronizationSources()[0].source)
    await eventually(lambda: relay.stage_stats("H3")["renditions"][0]["keyframes"] > keys, 5)
    assert pli_keyframes() == plis + 1
    await leave(relay, "tv/subscribe", pc, counters)
    assert relay.stage_stats("H3")["renditions"] == []
    await eventually(lambda: not h264_threads(), 5)
    await room.pc.close()
