"""Structural checks on offers and ICE candidates before aiortc or aioice sees them.

aiortc answers offers it should refuse (no ``a=fingerprint``: no DTLS identity to check)
and fails half-way through others (a BUNDLE group naming a missing m-line breaks
``createAnswer`` and then ``close``); aioice accepts a candidate with port 65536 and
raises later inside its checks. Everything here is refused up front as ``bad_sdp``.
The kinds and counts of m-lines per purpose are :mod:`media_relay.sdp`'s job.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .config import RelayError

MAX_LINE = 2048
"""Longest SDP line accepted (a sha-512 fingerprint line is ~200 characters)."""

_FINGERPRINT = re.compile(r"^[A-Za-z0-9-]{1,16} [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63}$")
_ICE_CHARS = re.compile(r"^[A-Za-z0-9+/]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,64}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*$")
_SETUP = {"actpass", "active", "passive"}
_CANDIDATE_TYPES = {"host", "srflx", "prflx", "relay"}


def _bad(message: str) -> RelayError:
    return RelayError(RelayError.BAD_SDP, message)


def _attr(lines: list[str], name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix):].strip() for line in lines if line.startswith(prefix)]


def _one_value(session: list[str], media: list[str], name: str, index: int) -> str:
    """An attribute of m-section ``index``, from the section or else the session."""
    values = _attr(media, name) or _attr(session, name)
    if not values:
        raise _bad(f"m-line {index} has no a={name}")
    return values[0]


def check_offer(sdp: Any) -> None:
    """Refuse an offer aiortc would answer or fail on: every m-section needs a mid, ICE
    credentials, a DTLS fingerprint and setup role (its own or the session's); a BUNDLE
    group names only m-sections present; candidate lines are sane (:func:`check_candidate`).
    Call after the per-purpose check of :mod:`media_relay.sdp` (it checks type and size)."""
    if not isinstance(sdp, str):
        raise _bad("SDP must be a string")
    lines = sdp.splitlines()
    if any(len(line) > MAX_LINE for line in lines):
        raise _bad(f"SDP line longer than {MAX_LINE} characters")
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    if not sections:
        raise _bad("offer has no m-line")
    mids: list[str] = []
    for i, media in enumerate(sections):
        found = _attr(media, "mid")
        if len(found) != 1 or not _TOKEN.match(found[0]):
            raise _bad(f"m-line {i} needs exactly one a=mid")
        mids.append(found[0])
        ufrag = _one_value(session, media, "ice-ufrag", i)
        pwd = _one_value(session, media, "ice-pwd", i)
        if not (4 <= len(ufrag) <= 256 and _ICE_CHARS.match(ufrag)):
            raise _bad(f"m-line {i}: a=ice-ufrag must be 4-256 ICE characters")
        if not (22 <= len(pwd) <= 256 and _ICE_CHARS.match(pwd)):
            raise _bad(f"m-line {i}: a=ice-pwd must be 22-256 ICE characters")
        if not _FINGERPRINT.match(_one_value(session, media, "fingerprint", i)):
            raise _bad(f"m-line {i}: a=fingerprint is not '<hash> XX:XX:...'")
        if _one_value(session, media, "setup", i) not in _SETUP:
            raise _bad(f"m-line {i}: a=setup must be one of {sorted(_SETUP)}")
        for candidate in _attr(media, "candidate"):
            check_candidate_line(candidate)
    if len(set(mids)) != len(mids):
        raise _bad("two m-lines share a mid")
    for group in _attr(session, "group"):
        semantics, *members = group.split()
        if semantics == "BUNDLE" and (not members or set(members) - set(mids)):
            raise _bad(f"BUNDLE group {members} names m-lines the offer does not have")


def _port(text: str, low: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= 65535:
        raise _bad(f"candidate port {text[:8]!r} is not {low}..65535")
    return int(text)


def check_candidate_line(line: str) -> None:
    """One candidate attribute (``candidate:`` prefix optional), as RFC 8839 shapes it:
    ``foundation component transport priority address port typ type [raddr A rport P]``."""
    bits = line.removeprefix("a=").removeprefix("candidate:").split()
    if len(bits) < 8 or bits[6] != "typ":
        raise _bad("candidate needs 'foundation component transport priority address "
                   "port typ type'")
    foundation, component, transport, priority, address, port = bits[:6]
    if not (len(foundation) <= 32 and _ICE_CHARS.match(foundation)):
        raise _bad("candidate foundation must be 1-32 ICE characters")
    if not (component.isascii() and component.isdigit() and 1 <= int(component) <= 256):
        raise _bad("candidate component must be 1..256")
    if transport.lower() not in ("udp", "tcp"):
        raise _bad("candidate transport must be udp or tcp")
    if not (priority.isascii() and priority.isdigit() and len(priority) <= 10
            and int(priority) <= 2**32 - 1):
        raise _bad("candidate priority must be 0..2**32-1")
    _check_address(address)
    _port(port, 1 if transport.lower() == "udp" else 0)
    if bits[7] not in _CANDIDATE_TYPES:
        raise _bad(f"candidate type must be one of {sorted(_CANDIDATE_TYPES)}")
    extras = bits[8:]
    if len(extras) % 2:
        raise _bad("candidate extensions come in name/value pairs")
    for name, value in zip(extras[::2], extras[1::2], strict=True):
        if name == "raddr":
            _check_address(value)
        elif name == "rport":
            _port(value, 0)
        elif name == "generation" and not (value.isascii() and value.isdigit()
                                           and len(value) <= 10):
            raise _bad("candidate generation must be a small integer")


def _check_address(address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not _HOSTNAME.match(address):  # browsers hide host addresses as <uuid>.local
            raise _bad("candidate address must be an IP address or a host name") from None


def check_candidate(candidate: Any) -> None:
    """A trickled ``{"candidate", "sdpMid", "sdpMLineIndex"}``: its line, when not the
    end-of-candidates ``""``, must pass :func:`check_candidate_line`."""
    if not isinstance(candidate, dict):
        raise _bad("candidate must be an object")
    line = candidate.get("candidate")
    if isinstance(line, str) and line:
        check_candidate_line(line)
