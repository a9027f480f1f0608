"""Browsers that hide their addresses behind mDNS names still connect: peer-reflexive.

A browser without a camera or microphone permission (a classroom TV, or one that denied
the camera) hides its host candidates behind ``<uuid>.local`` names (RFC 8828 mode 2,
draft-ietf-mmusic-mdns-ice-candidates). aioice 0.13 then, per offer:

1. tries to resolve each name by multicast DNS (1 s each, awaited inside
   ``setRemoteDescription``: the answer leaves a second late); the browser's responder is
   on another network in any real deployment (multicast does not cross a school's router),
   and here Chromium does not answer at all, so nothing resolves;
2. on the offer's ``a=end-of-candidates`` (or a trickled end) with no candidate left, prunes
   the only component and fails ICE at once, with an empty check list, before the
   browser's first connectivity check arrives. That check would have taught it the
   browser's real address as a peer-reflexive candidate (RFC 8445 7.3.1.3), which aioice
   does learn, but only while its check list is still running.

So the page sat in "reconnecting" for ever. The remedy, in this one place: hidden
candidates are dropped before aiortc sees them, and a peer connection that had any does
not hear end-of-candidates, so its ICE agent waits for the browser's checks (it answers
them, learns the browser's address and nominates the pair the browser nominates; an ICE-
lite SFU such as mediasoup only ever connects that way). A peer whose checks never come is
closed by the relay's ``connect_timeout``. Other peers (a teacher who granted the camera,
the headless client) are unchanged.
"""

from __future__ import annotations

import weakref

from aioice.mdns import is_mdns_hostname
from aiortc import RTCIceCandidate, RTCPeerConnection

_END = "a=end-of-candidates"


def is_hidden_line(line: str) -> bool:
    """Whether an SDP ``a=candidate:`` line names its host by an mDNS name."""
    if not line.startswith("a=candidate:"):
        return False
    fields = line.split()
    return len(fields) > 4 and is_mdns_hostname(fields[4])


def strip_hidden(sdp: str) -> tuple[str, int]:
    """The SDP without hidden candidates (and, when there were any, without
    ``a=end-of-candidates``); returns it with how many candidates were dropped."""
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    hidden = sum(1 for line in lines if is_hidden_line(line))
    if not hidden:
        return sdp, 0
    kept = [line for line in lines if not is_hidden_line(line) and line.strip() != _END]
    return ("\r\n" if "\r\n" in sdp else "\n").join(kept), hidden


class HiddenCandidates:
    """Which of the relay's peer connections learn their peer's address from its checks
    (weakly held: a closed, dropped peer connection leaves by itself)."""

    def __init__(self) -> None:
        self._learning: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()

    def offer(self, pc: RTCPeerConnection, sdp: str) -> str:
        """The offer to hand to ``pc.setRemoteDescription``."""
        sdp, hidden = strip_hidden(sdp)
        if hidden:
            self._learning.add(pc)
        return sdp

    def admit(self, pc: RTCPeerConnection, candidate: RTCIceCandidate | None) -> bool:
        """Whether a trickled candidate (``None`` = end of candidates) goes to aiortc."""
        if candidate is not None and is_mdns_hostname(candidate.ip):
            self._learning.add(pc)
            return False
        return not (candidate is None and pc in self._learning)

    def learning(self, pc: RTCPeerConnection) -> bool:
        """True once ``pc``'s peer hid a candidate (tests and stats)."""
        return pc in self._learning
