"""Classrooms whose browser hides its addresses behind mDNS names (no camera permission)
still connect: the relay learns their address from their connectivity checks
(media_relay/mdns.py). Real aiortc peers whose offers are rewritten the way Chromium
writes them without a media permission."""

from __future__ import annotations

import re
import uuid

from aiortc import RTCSessionDescription

from classroom_client.media import FrameCounter
from media_relay import Relay
from media_relay.mdns import HiddenCandidates, is_hidden_line, strip_hidden
from media_relay.sdp import parse_candidate

from .peers import Classroom, new_pc, publish, wait_until

HOST = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( .*)$")


def hide_addresses(sdp: str) -> str:
    """Every candidate's address replaced by a ``<uuid>.local`` name, as Chromium does."""
    lines = []
    for line in sdp.split("\r\n"):
        match = HOST.match(line)
        if match:
            line = f"{match[1]}{uuid.uuid4()}.local{match[3]}"
        lines.append(line)
    return "\r\n".join(lines)


def nominated(pc):
    """The selected aioice candidate pair of a peer connection (one bundled transport)."""
    return pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1]


def without_candidates(sdp: str) -> tuple[str, list[str]]:
    """The offer with no candidate lines (they are trickled instead), and those lines."""
    lines = sdp.split("\r\n")
    found = [line for line in lines if line.startswith("a=candidate:")]
    kept = [line for line in lines
            if not line.startswith("a=candidate:") and line != "a=end-of-candidates"]
    return "\r\n".join(kept), found


async def hidden_subscriber(relay: Relay, lesson: str, peer_id: str, *,
                            trickle: bool = False) -> Classroom:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks = {}
    pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
    await pc.setLocalDescription(await pc.createOffer())
    offer = hide_addresses(pc.localDescription.sdp)
    assert ".local" in offer and "a=end-of-candidates" in offer
    trickled: list[str] = []
    if trickle:
        offer, trickled = without_candidates(offer)
    answer = await relay.subscribe(lesson, peer_id, offer)
    for line in trickled:
        await relay.add_ice_candidate(peer_id, {"candidate": line[2:], "sdpMid": "0",
                                                "sdpMLineIndex": 0})
    if trickle:
        await relay.add_ice_candidate(peer_id, {"candidate": "", "sdpMid": "0",
                                                "sdpMLineIndex": 0})
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return Classroom(pc, FrameCounter(tracks["video"]), FrameCounter(tracks["audio"]), 0.0)


def test_hidden_lines_are_dropped_with_end_of_candidates() -> None:
    name = f"{uuid.uuid4()}.local"
    sdp = ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
           f"a=candidate:1 1 udp 2122260223 {name} 50000 typ host generation 0\r\n"
           "a=candidate:2 1 udp 1686052607 203.0.113.7 50001 typ srflx raddr 0.0.0.0 rport 0\r\n"
           "a=end-of-candidates\r\n")
    stripped, hidden = strip_hidden(sdp)
    assert hidden == 1
    assert name not in stripped and "a=end-of-candidates" not in stripped
    assert "203.0.113.7 50001 typ srflx" in stripped  # real addresses are kept
    assert is_hidden_line(f"a=candidate:1 1 udp 1 {name} 1 typ host")
    assert not is_hidden_line("a=candidate:1 1 udp 1 10.0.0.1 1 typ host")
    assert not is_hidden_line("a=candidate:1 1 udp 1 printer.example.local.org 1 typ host")
    plain = sdp.replace(name, "10.0.0.5")
    assert strip_hidden(plain) == (plain, 0)  # a browser with a permission: untouched


def test_trickled_end_is_withheld_only_after_a_hidden_candidate() -> None:
    class Pc:  # any weakly referable object stands for a peer connection here
        pass

    hidden = HiddenCandidates()
    shown, learning = Pc(), Pc()
    host = parse_candidate({"candidate": "candidate:1 1 udp 1 10.0.0.1 5 typ host",
                            "sdpMid": "0"})
    mdns = parse_candidate({"candidate": f"candidate:1 1 udp 1 {uuid.uuid4()}.local 5 typ host",
                            "sdpMid": "0"})
    assert hidden.admit(shown, host) and hidden.admit(shown, None)
    assert not hidden.admit(learning, mdns)
    assert hidden.learning(learning) and not hidden.learning(shown)
    assert hidden.admit(learning, host)
    assert not hidden.admit(learning, None)  # aioice would give up before the checks come


async def test_classroom_with_only_mdns_candidates_receives_video_and_audio(
        relay: Relay, events) -> None:
    teacher = await publish(relay, "M1")
    room = await hidden_subscriber(relay, "M1", "tv")
    await wait_until(lambda: room.video.frames >= 15 and room.audio.frames >= 25, 10,
                     "video and audio at a classroom whose offer had only .local candidates")
    assert "connected" in events.states_of("tv")
    pair = nominated(room.pc)
    assert not pair.remote_candidate.host.endswith(".local")
    # the relay learnt the classroom's real address from its checks (peer-reflexive)
    relay_pair = nominated(relay._peers["tv"].pc)
    assert relay_pair.remote_candidate.type == "prflx"
    assert relay_pair.remote_addr == pair.local_addr
    await room.close()
    await teacher.close()


async def test_trickled_mdns_candidates_and_end_of_candidates(relay: Relay, events) -> None:
    teacher = await publish(relay, "M2")
    room = await hidden_subscriber(relay, "M2", "tv2", trickle=True)
    await wait_until(lambda: room.video.frames >= 15 and room.audio.frames >= 25, 10,
                     "media at a classroom that trickled .local candidates, then their end")
    assert "failed" not in events.states_of("tv2")
    await room.close()
    await teacher.close()
