"""Bad input: offers that are not offers, wrong media, bad candidates -> RelayError, no leak."""

from __future__ import annotations

import pytest

from media_relay import Relay, RelayError

from .peers import new_pc, publish, wait_until


async def _offer(video: bool = True, audio: bool = True, direction: str = "recvonly") -> str:
    pc = new_pc()
    if video:
        pc.addTransceiver("video", direction=direction)
    if audio:
        pc.addTransceiver("audio", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.parametrize("sdp", [
    None, 42, b"v=0", "", "hello", "v=0\r\n", "v=0\r\nm=application 9 DTLS/SCTP 5000\r\n",
    "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "v=0\r\n" + "a=x\r\n" * 40000,
])
async def test_malformed_offers_are_bad_sdp(relay: Relay, sdp) -> None:
    for call in (relay.publish, relay.subscribe):
        with pytest.raises(RelayError) as info:
            await call("L1", "p1", sdp)
        assert info.value.reason == "bad_sdp"
    assert relay.stats()["lessons"] == {} and relay.stats()["subscribers"] == 0


async def test_wrong_media_is_bad_sdp(relay: Relay) -> None:
    audio_only = await _offer(video=False, direction="sendonly")
    with pytest.raises(RelayError) as info:
        await relay.publish("L1", "t", audio_only)
    assert info.value.reason == "bad_sdp"
    no_opus = (await _offer(direction="sendonly")).replace("opus/48000", "xyz/48000")
    with pytest.raises(RelayError) as info:
        await relay.publish("L1", "t", no_opus)
    assert info.value.reason == "bad_sdp"
    no_vp8 = (await _offer()).replace("VP8/90000", "AV1X/90000")
    no_vp8 = "\r\n".join(line for line in no_vp8.split("\r\n") if "H264" not in line)
    with pytest.raises(RelayError) as info:
        await relay.subscribe("L1", "c", no_vp8)
    assert info.value.reason == "bad_sdp"
    assert relay.stats()["lessons"] == {}


async def test_bad_candidates_are_bad_sdp_and_good_ones_accepted(relay: Relay) -> None:
    teacher = await publish(relay, "L1")
    for bad in ("nope", {"candidate": "candidate:garbage"}, {"candidate": 5, "sdpMid": "0"},
                {"candidate": "candidate:1 1 udp 1 192.0.2.9 5000 typ host"},
                {"candidate": "candidate:1 1 udp 1 192.0.2.9 5000 typ host", "sdpMid": 0},
                {"candidate": "candidate:1 1 udp 1 192.0.2.9 5000 typ host", "sdpMLineIndex": -1}):
        with pytest.raises(RelayError) as info:
            await relay.add_ice_candidate("teacher", bad)
        assert info.value.reason == "bad_sdp"
    await relay.add_ice_candidate("teacher", {
        "candidate": "candidate:1 1 udp 2130706431 192.0.2.9 5000 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0})
    await relay.add_ice_candidate("teacher", {
        "candidate": "candidate:2 1 udp 2130706431 5c2e1a30-0f6b-4c0e-9d4c-1f0a9d5e3a11.local "
                     "5001 typ host", "sdpMid": "0", "sdpMLineIndex": 0})
    await relay.add_ice_candidate("teacher", {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0})
    await relay.add_ice_candidate("nobody", {"candidate": "", "sdpMid": "0"})  # ignored
    await wait_until(lambda: teacher.pc.connectionState == "connected", 10, "teacher connected")
    await teacher.close()
    await wait_until(lambda: not relay.stats()["lessons"], 10, "lesson gone")


async def test_a_bad_offer_does_not_disturb_a_running_lesson(relay: Relay) -> None:
    teacher = await publish(relay, "L1")
    with pytest.raises(RelayError):
        await relay.publish("L1", "intruder", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
    assert relay.stats()["lessons"]["L1"]["publisher"]["peer_id"] == "teacher"
    await teacher.close()
