"""Pure pieces of the relay: timelines, packet queues, frame release, offer checks."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from media_relay import RelayError
from media_relay.config import RelayConfig
from media_relay.ingress import AudioFrameBuffer, VideoFrameBuffer
from media_relay.packets import VIDEO_TIME_BASE, PacketMeta, Timeline, make_packet
from media_relay.rendition import Decoded, Rendition, fit_size
from media_relay.sdp import check_publish_offer, check_subscribe_offer
from media_relay.tracks import PacketTrack, PassthroughEncoder


def packet(n: int, keyframe: bool = False):
    meta = PacketMeta([b"p%d" % n], n * 3000, keyframe, 0.0)
    return make_packet(b"x", n * 3000, VIDEO_TIME_BASE, meta)


def test_timeline_is_continuous_across_sources(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("media_relay.packets.time.monotonic", lambda: clock[0])
    timeline = Timeline(90_000)
    assert timeline.map(1, 5000) == 0
    assert timeline.map(1, 8000) == 3000
    clock[0] += 0.5  # the teacher reconnects half a second later, timestamps restart
    assert timeline.map(2, 0) == 3000 + 45_000
    assert timeline.map(2, 3000) == 3000 + 48_000
    assert timeline.map(2, 3000) == 3000 + 48_001  # never backwards or repeated


async def test_video_track_starts_at_keyframe_and_flushes_on_overflow() -> None:
    asked: list[str] = []
    track = PacketTrack("video", 3, asked.append)
    track.push(packet(0))
    assert track.queued == 0 and track.dropped == 1  # waits for a keyframe
    track.push(packet(1, keyframe=True))
    for n in range(2, 4):
        track.push(packet(n))
    assert track.queued == 3
    track.push(packet(4))  # overflow: flush, wait for the next keyframe, ask for one
    assert track.queued == 0 and asked == ["overflow"]
    track.push(packet(5))
    assert track.queued == 0
    track.push(packet(6, keyframe=True))
    got = await track.recv()
    assert got.opaque.keyframe and got.pts == 6 * 3000
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_audio_track_drops_oldest_and_recv_waits() -> None:
    track = PacketTrack("audio", 2)
    waiter = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.push(packet(1))
    assert (await waiter).pts == 3000
    for n in range(2, 5):
        track.push(packet(n))
    assert track.queued == 2 and track.dropped == 1
    assert (await track.recv()).pts == 3 * 3000
    pending = asyncio.ensure_future(track.recv())
    await track.recv()
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await pending


def test_passthrough_encoder_uses_shared_payloads_and_records_remb() -> None:
    encoder = PassthroughEncoder("video")
    assert encoder.pack(packet(7)) == ([b"p7"], 21000)
    import av

    plain = av.Packet(b"\x00" * 10)
    plain.pts, plain.time_base = 3000, VIDEO_TIME_BASE
    payloads, timestamp = encoder.pack(plain)  # no metadata: real packetizer
    assert timestamp == 3000 and payloads
    encoder.target_bitrate = 800_000
    assert encoder.remb_bitrate == 800_000


def rtp(seq: int, ts: int, marker: int = 0, data: bytes = b"d") -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=ts, marker=marker)
    p._data = data
    return p


def test_video_buffer_releases_a_frame_on_its_marker() -> None:
    buffer = VideoFrameBuffer()
    assert buffer.add(rtp(1, 100, data=b"a")) == (False, None)
    _, frame = buffer.add(rtp(2, 100, marker=1, data=b"b"))
    assert frame.data == b"ab" and frame.timestamp == 100
    # out of order within a frame: released when complete
    assert buffer.add(rtp(4, 200, marker=1, data=b"d"))[1] is None
    assert buffer.add(rtp(3, 200, data=b"c"))[1].data == b"cd"


def test_audio_buffer_releases_at_once_and_drops_late_packets() -> None:
    buffer = AudioFrameBuffer()
    assert buffer.add(rtp(1, 960))[1].timestamp == 960
    assert buffer.add(rtp(3, 2880))[1].timestamp == 2880
    assert buffer.add(rtp(2, 1920))[1] is None  # late: dropped, never reordered


async def test_encoder_restarts_with_a_keyframe_when_time_goes_back() -> None:
    """libvpx refuses a pts that is not later than the last (``avcodec_send_frame()``:
    invalid data, seen on a node that froze and thawed): the rendition opens a fresh
    encoder and sends a keyframe instead of losing the frame to an error."""
    import av

    rendition = Rendition(RelayConfig(), "low")
    frame = av.VideoFrame(320, 180, "yuv420p")
    out = [rendition._encode(Decoded(frame, pts, 0.0, 1))  # noqa: SLF001 - the media thread's step
           for pts in (3000, 6000, 9000, 6000, 9000)]
    assert all(p is not None for p in out)
    keyframes = [p.is_keyframe for p in out]
    assert keyframes == [True, False, False, True, False], keyframes
    assert [p.pts for p in out] == [3000, 6000, 9000, 6000, 9000]


def test_fit_size_caps_to_720p() -> None:
    assert fit_size(640, 360, 1280, 720) == (640, 360)
    assert fit_size(1920, 1080, 1280, 720) == (1280, 720)
    assert fit_size(1081, 1921, 1280, 720) == (404, 720)


def test_offer_checks() -> None:
    video = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    assert check_publish_offer(video + audio, 65536) == ["video", "audio"]
    assert check_subscribe_offer(video, 65536) == ["video"]
    more = video.removeprefix("v=0\r\n")
    assert check_publish_offer(video + more + audio, 65536) == ["video", "video", "audio"]
    for bad in (audio, "v=0\r\n" + audio, video + more + more):
        with pytest.raises(RelayError):
            check_publish_offer(bad, 65536)
    with pytest.raises(RelayError):
        check_subscribe_offer("v=0\r\nm=application 9 DTLS/SCTP 5000\r\n", 65536)
