"""The batched send path: packets as aiortc writes them, SRs, receiver reports, NACK/RTX."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media_relay import Relay
from media_relay.rtpout import HeaderTemplate, ntp_now, serialize

from .peers import publish, subscribe, wait_until

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def extensions_map(*uris_ids: tuple[str, int]) -> HeaderExtensionsMap:
    parameters = RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in uris_ids])
    ext = HeaderExtensionsMap()
    ext.configure(parameters)
    return ext


@pytest.mark.parametrize("uris_ids,mid", [
    (((MID, 1), (ABS, 3)), "0"),
    (((MID, 4), (ABS, 2)), "video-long-mid-1"),
    (((MID, 1),), "1"),
    ((), None),
])
@pytest.mark.parametrize("marker", [False, True])
def test_header_is_byte_for_byte_what_aiortc_serializes(uris_ids, mid, marker) -> None:
    ext = extensions_map(*uris_ids)
    template = HeaderTemplate(ext, mid)
    ntp = ntp_now()
    ours = serialize(template, ntp, 96, marker, 65535, 0xFFFFFFF0, 0x12345678, b"payload")
    packet = RtpPacket(payload_type=96, marker=int(marker), sequence_number=65535,
                       timestamp=0xFFFFFFF0, ssrc=0x12345678, payload=b"payload")
    packet.extensions.mid = mid
    packet.extensions.abs_send_time = (ntp >> 14) & 0xFFFFFF
    assert ours == packet.serialize(ext)
    parsed = RtpPacket.parse(ours, ext)
    assert parsed.extensions.mid == mid and parsed.payload == b"payload"


def test_ntp_now_matches_aiortc_clock() -> None:
    from aiortc import clock

    assert abs(ntp_now() - clock.current_ntp_time()) < (1 << 32) // 100  # 10 ms


def _stream(relay: Relay, peer_id: str, kind: str):
    return relay._peers[peer_id].streams[kind]


async def test_sender_reports_and_receiver_reports_flow(relay: Relay) -> None:
    teacher = await publish(relay, "R1")
    room = await subscribe(relay, "R1", "c1")
    video, audio = _stream(relay, "c1", "video"), _stream(relay, "c1", "audio")
    # aiortc's RTCP task sends SRs from our counters; the receiver answers with RRs (RTT)
    await wait_until(lambda: video.rtt is not None and audio.rtt is not None, 10,
                     "round-trip times from receiver reports")
    assert video.reports >= 1 and audio.reports >= 1
    stats = relay.stats()["lessons"]["R1"]["subscribers"]["c1"]
    assert stats["video"]["path"] == "batched" and stats["video"]["rtt_ms"] >= 0
    assert stats["video"]["fraction_lost"] == 0 and stats["audio"]["receiver_reports"] >= 1
    # the SR the classroom received carries our packet and octet counts
    receiver = next(r for r in room.pc.getReceivers() if r.track.kind == "video")
    remote = [s for s in (await receiver.getStats()).values()
              if s.type == "remote-outbound-rtp"]
    assert remote and 0 < remote[0].packetsSent <= video.packets
    assert 0 < remote[0].bytesSent <= video.octets
    # the SR's NTP time is the wall clock of a recent send (lip sync relies on it)
    assert abs(remote[0].remoteTimestamp.timestamp() - time.time()) < 3
    sent = [s for s in (await relay._peers["c1"].pc.getSenders()[0].getStats()).values()
            if s.type == "outbound-rtp"]
    assert sent and sent[0].packetsSent > 0
    await room.close()
    await teacher.close()


async def test_nack_is_answered_from_history_with_rtx(relay: Relay) -> None:
    teacher = await publish(relay, "R2")
    room = await subscribe(relay, "R2", "c1")
    await wait_until(lambda: room.video.frames >= 10, 10, "video flowing")
    stream = _stream(relay, "c1", "video")
    assert stream._rtx_payload_type is not None  # aiortc peers negotiate RTX
    receiver = next(r for r in room.pc.getReceivers() if r.track.kind == "video")
    seen: list[int] = []
    original = receiver._handle_rtp_packet

    async def spy(packet, arrival_time_ms):
        seen.append(packet.payload_type)
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = spy
    recent = (stream._sequence - 1) & 0xFFFF  # never before the newest keyframe
    ssrc = receiver.getSynchronizationSources()[0].source
    await receiver._send_rtcp_nack(ssrc, [recent])
    await receiver._send_rtcp_nack(ssrc, [(stream._sequence - 200) & 0xFFFF])
    await wait_until(lambda: stream.retransmits >= 1, 2, "retransmission")
    await wait_until(lambda: stream._rtx_payload_type in seen, 2, "RTX packet at the classroom")
    await wait_until(lambda: stream.nacked == 2, 2, "both NACKs handled")
    assert stream.retransmits == 1  # the second was too old: not in the history
    await asyncio.sleep(0.3)
    before = room.video.frames
    await wait_until(lambda: room.video.frames > before + 5, 5, "video goes on")
    await room.close()
    await teacher.close()


async def test_tasks_path_still_delivers(make_relay) -> None:
    """``batched_send=False``: aiortc's sender tasks read the PacketTracks (av.Packet)."""
    relay = make_relay(batched_send=False)
    teacher = await publish(relay, "R3")
    rooms = [await subscribe(relay, "R3", f"c{i}") for i in range(2)]
    await wait_until(lambda: all(r.video.frames >= 30 and r.audio.frames >= 50 for r in rooms),
                     10, "video and audio through the task path")
    stats = relay.stats()["lessons"]["R3"]["subscribers"]["c0"]
    assert stats["video"]["path"] == "tasks" and stats["video"]["sent"] >= 30
    for room in rooms:
        await room.close()
    await teacher.close()


async def test_retransmissions_are_bounded_by_a_share_of_the_media(relay: Relay,
                                                                   monkeypatch) -> None:
    """On a congested link NACKs ask for more than it can carry: RTX spends at most
    _RTX_SHARE of the media bytes (token bucket), the rest is refused and counted."""
    teacher = await publish(relay, "R4")
    room = await subscribe(relay, "R4", "c1")
    await wait_until(lambda: room.video.frames >= 10, 10, "video flowing")
    stream = _stream(relay, "c1", "video")
    receiver = next(r for r in room.pc.getReceivers() if r.track.kind == "video")
    ssrc = receiver.getSynchronizationSources()[0].source
    from media_relay import rtpout

    monkeypatch.setattr(rtpout, "_RTX_SHARE", 0.0)  # no credit comes in meanwhile
    stream._rtx_credit = 0.0  # as after a burst of retransmissions
    await receiver._send_rtcp_nack(ssrc, [(stream._sequence - 1) & 0xFFFF])
    await wait_until(lambda: stream.nacked == 1, 2, "NACK handled")
    assert stream.retransmits == 0 and stream.rtx_over_budget == 1
    monkeypatch.undo()
    octets = stream.octets
    await wait_until(lambda: stream.octets > octets + 4000, 5, "more media sent")
    await receiver._send_rtcp_nack(ssrc, [(stream._sequence - 1) & 0xFFFF])
    await wait_until(lambda: stream.retransmits == 1, 2, "retransmitted once credit is back")
    assert stream.stats()["rtx_over_budget"] == 1
    # nothing from before the newest keyframe is resent: the decoder starts again there
    key = stream._keyframe_sequence
    stream._keyframe_request()
    await wait_until(lambda: stream._keyframe_sequence != key, 5, "a new keyframe written")
    await receiver._send_rtcp_nack(ssrc, [(stream._keyframe_sequence - 1) & 0xFFFF])
    await wait_until(lambda: stream.rtx_stale == 1, 2, "stale NACK refused")
    assert stream.retransmits == 1
    await room.close()
    await teacher.close()


async def test_probe_pads_with_rtx_copies_and_stops_with_the_probe(make_relay) -> None:
    """A probing decision pads the video stream up to the probed tier's rate with RTX
    copies of the newest packets: the classroom keeps decoding, the padding stops after."""
    from media_relay.rate_control import PROBING, Decision

    relay = make_relay(rate_control=False)  # the decisions come from this test
    teacher = await publish(relay, "R5")
    room = await subscribe(relay, "R5", "c1")
    await wait_until(lambda: room.video.frames >= 10, 10, "video flowing")
    sub = relay._peers["c1"]
    stream = _stream(relay, "c1", "video")
    ladder = sub.ladder
    low = ladder.lowest_video
    sub.tier = low  # a classroom on low probing mid (no switch: padding only)
    mid = ladder.above(low)
    sub._pad_for_probe(Decision(tier=low, state=PROBING, probe_tier=mid,
                                probe_bitrate=ladder.required(mid)))
    expected = ladder.required(mid) - ladder.required(low)
    assert stream.padding_bitrate == expected
    start, octets = time.monotonic(), stream.padding_octets
    frames = room.video.frames
    await asyncio.sleep(2.0)
    rate = 8 * (stream.padding_octets - octets) / (time.monotonic() - start)
    assert 0.6 * expected <= rate <= 1.3 * expected, (rate, expected)
    assert room.video.frames > frames + 20  # duplicates do not disturb the receiver
    sub._pad_for_probe(Decision(tier=low))
    assert stream.padding_bitrate is None
    padded = stream.padding_packets
    await asyncio.sleep(0.5)
    assert stream.padding_packets == padded
    # audio-only probing low: no video flows, the padding goes out on its timer
    sub.set_tier("audio", "test")
    sent = stream.sent
    sub._pad_for_probe(Decision(tier="audio", state=PROBING, probe_tier=low,
                                probe_bitrate=ladder.required(low)))
    await asyncio.sleep(1.0)
    assert stream.sent == sent and stream.padding_packets > padded + 10
    sub._pad_for_probe(Decision(tier="audio"))
    sub.set_tier(ladder.top, "test")
    frames = room.video.frames
    await wait_until(lambda: room.video.frames > frames + 15, 5, "video again after padding")
    await room.close()
    await teacher.close()
