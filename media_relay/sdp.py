"""Cheap checks on offers and candidates before anything reaches aiortc."""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceCandidate, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

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
    """A teacher sends exactly one video and at most one audio section."""
    kinds = offer_media(sdp, max_bytes)
    if kinds.count("video") != 1 or kinds.count("audio") > 1 or set(kinds) - {"audio", "video"}:
        raise RelayError(RelayError.BAD_SDP, f"publish offer needs one video (+audio), has {kinds}")
    return kinds


def check_subscribe_offer(sdp: Any, max_bytes: int) -> list[str]:
    """A classroom receives at most one video and one audio section, at least one of them."""
    kinds = offer_media(sdp, max_bytes)
    if (
        not kinds
        or kinds.count("video") > 1
        or kinds.count("audio") > 1
        or set(kinds) - {"audio", "video"}
    ):
        raise RelayError(RelayError.BAD_SDP,
                         f"subscribe offer needs video and/or audio, has {kinds}")
    return kinds


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
