"""Cheap checks on offers and candidates before anything reaches aiortc."""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceCandidate, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import SessionDescription, candidate_from_sdp

from .config import RelayError


def offer_media(sdp: Any, max_bytes: int) -> list[str]:
    """Return the kinds of the offer's m= lines in order, or raise ``RelayError(bad_sdp)``."""
    if not isinstance(sdp, str):
        raise RelayError(RelayError.BAD_SDP, "SDP must be a string")
    if len(sdp) > max_bytes:
        raise RelayError(RelayError.BAD_SDP, f"SDP larger than {max_bytes} bytes")
    if not sdp.startswith("v=0"):
        raise RelayError(RelayError.BAD_SDP, "SDP must start with v=0")
    kinds = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            kinds.append(line[2:].split(" ", 1)[0])
    return kinds


def check_publish_offer(sdp: Any, max_bytes: int) -> list[str]:
    """A teacher sends one video (the camera), optionally a second (the share), and at most
    one audio section."""
    kinds = offer_media(sdp, max_bytes)
    if (kinds.count("video") not in (1, 2) or kinds.count("audio") > 1
            or set(kinds) - {"audio", "video"}):
        raise RelayError(RelayError.BAD_SDP,
                         f"publish offer needs a camera video (+share, +audio), has {kinds}")
    return kinds


SUBSCRIBE_VIDEO_LINES = ("camera", "share", "stage_video")
"""A subscriber's video m-lines, in offer order (docs/two-way.md)."""
SUBSCRIBE_AUDIO_LINES = ("audio", "stage_audio")


def check_subscribe_offer(sdp: Any, max_bytes: int) -> list[str]:
    """A classroom receives up to 3 video (camera, share, stage) and 2 audio (teacher,
    stage) sections, at least one section."""
    kinds = offer_media(sdp, max_bytes)
    if (
        not kinds
        or kinds.count("video") > len(SUBSCRIBE_VIDEO_LINES)
        or kinds.count("audio") > len(SUBSCRIBE_AUDIO_LINES)
        or set(kinds) - {"audio", "video"}
    ):
        raise RelayError(RelayError.BAD_SDP,
                         f"subscribe offer needs 1-3 video and/or 1-2 audio, has {kinds}")
    return kinds


def subscribe_lines(kinds: list[str]) -> list[str]:
    """Name each m-line of a subscribe offer by its purpose (per kind, in order)."""
    counts = {"video": 0, "audio": 0}
    names = []
    for kind in kinds:
        table = SUBSCRIBE_VIDEO_LINES if kind == "video" else SUBSCRIBE_AUDIO_LINES
        names.append(table[counts[kind]])
        counts[kind] += 1
    return names


def subscribe_codecs(sdp: str, kinds: list[str]) -> list[str]:
    """The codec the relay sends on each m-line of a subscribe offer: Opus for audio; for
    video VP8 when offered, else H.264 (an old TV box: constrained baseline or baseline,
    ``packetization-mode=1``, as the H.264 renditions encode). A video line with neither
    is ``bad_sdp`` with the reason; an offer aiortc cannot parse keeps VP8 (negotiation
    then says what is wrong)."""
    default = ["VP8" if kind == "video" else "opus" for kind in kinds]
    try:
        media = SessionDescription.parse(sdp).media
    except Exception:  # noqa: BLE001 - reported by the negotiation that follows
        return default
    if [m.kind for m in media] != kinds:
        return default
    h264 = [RTCRtpCodecParameters(mimeType=c.mimeType, clockRate=c.clockRate,
                                  payloadType=0, parameters=dict(c.parameters or {}))
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == "video/h264"]
    chosen = []
    for kind, section in zip(kinds, media, strict=True):
        if kind != "video":
            chosen.append("opus")
            continue
        offered = section.rtp.codecs
        if any(c.mimeType.lower() == "video/vp8" for c in offered):
            chosen.append("VP8")
        elif any(is_codec_compatible(ours, c) for c in offered for ours in h264):
            chosen.append("H264")
        else:
            names = sorted({c.mimeType.split("/")[-1] for c in offered if not is_rtx(c)})
            raise RelayError(RelayError.BAD_SDP,
                             "a classroom's video must accept VP8 or H.264 (constrained "
                             f"baseline, packetization-mode=1); the offer has {names}")
    return chosen


_UPLINK_CODECS = {"video": "vp8", "audio": "opus"}


def check_uplink_offer(sdp: Any, max_bytes: int) -> list[str]:
    """A classroom's uplink: at most 1 video (VP8) + 1 audio (Opus), at least one.

    More sections: ``too_many_tracks``; another kind or no VP8/Opus offered: ``bad_sdp``.
    """
    kinds = offer_media(sdp, max_bytes)
    if set(kinds) - {"audio", "video"} or not kinds:
        raise RelayError(RelayError.BAD_SDP, f"uplink offer needs video and/or audio, has {kinds}")
    if kinds.count("video") > 1 or kinds.count("audio") > 1:
        raise RelayError(RelayError.TOO_MANY_TRACKS,
                         f"an uplink carries at most 1 video + 1 audio, offer has {kinds}")
    for kind, codecs in zip(kinds, _section_codecs(sdp), strict=True):
        if _UPLINK_CODECS[kind] not in codecs:
            raise RelayError(RelayError.BAD_SDP,
                             f"uplink {kind} must offer {_UPLINK_CODECS[kind]}, has {codecs}")
    return kinds


def check_grid_offer(sdp: Any, max_bytes: int, max_slots: int) -> list[str]:
    """The teacher's grid: 1..max_slots video sections + at most 1 audio section."""
    kinds = offer_media(sdp, max_bytes)
    videos = kinds.count("video")
    if set(kinds) - {"audio", "video"} or not 1 <= videos <= max_slots \
            or kinds.count("audio") > 1:
        raise RelayError(RelayError.BAD_SDP,
                         f"grid offer needs 1-{max_slots} video + at most 1 audio, has {kinds}")
    return kinds


def _section_codecs(sdp: str) -> list[set[str]]:
    """The codec names (lower case) of each m-section's rtpmap lines."""
    sections: list[set[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append(set())
        elif line.startswith("a=rtpmap:") and sections:
            parts = line.split(" ", 1)
            if len(parts) == 2:
                sections[-1].add(parts[1].split("/", 1)[0].strip().lower())
    return sections


def cap_bandwidth(sdp: str, limits: dict[str, int]) -> str:
    """``sdp`` with ``b=AS`` (kbit/s) and ``b=TIAS`` (bit/s) in each m-section whose kind
    is in ``limits`` (bit/s), right after its ``c=`` line (or the ``m=`` line)."""
    out: list[str] = []
    kind: str | None = None
    pending = False
    for line in sdp.splitlines():
        if pending and not line.startswith(("i=", "c=")):
            bits = limits[kind]  # type: ignore[index]
            out += [f"b=AS:{max(1, bits // 1000)}", f"b=TIAS:{bits}"]
            pending = False
        if line.startswith("b=") and kind in limits:
            continue  # ours replace any
        out.append(line)
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
            pending = kind in limits
    if pending:
        bits = limits[kind]  # type: ignore[index]
        out += [f"b=AS:{max(1, bits // 1000)}", f"b=TIAS:{bits}"]
    return "\r\n".join(out) + "\r\n"


def preferred_codecs(kind: str, names: tuple[str, ...], *,
                     sender: bool) -> list[RTCRtpCodecCapability]:
    """The capabilities named (in that order) plus RTX, for ``setCodecPreferences``."""
    caps = (RTCRtpSender if sender else RTCRtpReceiver).getCapabilities(kind).codecs
    chosen = []
    for name in names:
        chosen += [c for c in caps if c.mimeType.lower() == f"{kind}/{name}".lower()]
    chosen += [c for c in caps if is_rtx(c)]
    return chosen


def parse_candidate(candidate: Any) -> RTCIceCandidate | None:
    """Turn a browser's ``{"candidate", "sdpMid", "sdpMLineIndex"}`` into aiortc's type.

    ``None`` means end of candidates (an empty ``candidate`` string).
    """
    if not isinstance(candidate, dict):
        raise RelayError(RelayError.BAD_SDP, "candidate must be an object")
    line = candidate.get("candidate")
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if line is None or line == "":
        return None
    if not isinstance(line, str) or len(line) > 1024:
        raise RelayError(RelayError.BAD_SDP, "candidate must be a short string")
    if mid is not None and not isinstance(mid, str):
        raise RelayError(RelayError.BAD_SDP, "sdpMid must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise RelayError(RelayError.BAD_SDP, "sdpMLineIndex must be a non-negative integer")
    if mid is None and index is None:
        raise RelayError(RelayError.BAD_SDP, "candidate needs sdpMid or sdpMLineIndex")
    line = line.removeprefix("a=")
    line = line.removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(line)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the peer's fault
        raise RelayError(RelayError.BAD_SDP, f"unparsable candidate: {exc}") from None
    parsed.sdpMid = mid
    parsed.sdpMLineIndex = index
    return parsed
