"""The headless client's ICE servers: `welcome.ice_servers` as aiortc can use them.

aiortc (1.16) takes the first STUN and the first TURN URL it is given and ignores the rest,
while a browser tries every URL. A school network that drops UDP needs the TCP or TLS one,
so the client picks one TURN URL: the transport asked for, else the first URL a real TURN
allocation succeeds on (``pick_turn_url``: all tried at once, the server's order wins),
and hands aiortc only that one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aioice.turn import create_turn_endpoint
from aiortc import RTCIceServer, RTCPeerConnection
from aiortc.rtcicetransport import parse_stun_turn_uri

from media_relay import webrtc_private

logger = logging.getLogger(__name__)

TRANSPORTS = ("udp", "tcp", "tls")


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server.get("urls", [])
    return [urls] if isinstance(urls, str) else list(urls)


def turn_transport(url: str) -> str:
    """``udp``, ``tcp`` or ``tls`` (turns:) of a TURN URL."""
    parsed = parse_stun_turn_uri(url)
    return "tls" if parsed["scheme"] == "turns" else parsed["transport"]


def turn_urls(servers: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every TURN URL with the server entry (credentials) it came with, in order."""
    return [(url, s) for s in servers for url in _urls(s) if url.startswith("turn")]


def rtc_ice_servers(servers: list[dict[str, Any]],
                    turn_url: str | None = None) -> list[RTCIceServer]:
    """One RTCIceServer per URL; of the TURN URLs only ``turn_url`` (default: the first)."""
    turns = turn_urls(servers)
    chosen = turn_url if turn_url is not None else (turns[0][0] if turns else None)
    out = []
    for server in servers:
        for url in _urls(server):
            if url.startswith("turn") and url != chosen:
                continue
            out.append(RTCIceServer(urls=url, username=server.get("username"),
                                    credential=server.get("credential")))
    return out


async def _allocates(url: str, server: dict[str, Any], timeout: float) -> bool:
    parsed = parse_stun_turn_uri(url)
    try:
        turn, _ = await asyncio.wait_for(create_turn_endpoint(
            asyncio.DatagramProtocol, (parsed["host"], parsed["port"]),
            server.get("username"), server.get("credential"),
            ssl=parsed["scheme"] == "turns", transport=parsed["transport"]), timeout)
    except Exception as exc:  # refused, timed out, 401 from coturn, TLS not trusted
        logger.info("TURN %s not usable: %s", url, type(exc).__name__)
        return False
    turn.close()
    return True


async def pick_turn_url(servers: list[dict[str, Any]], prefer: str | None = None,
                        timeout: float = 3.0) -> str | None:
    """The TURN URL to give aiortc: the first of transport ``prefer``, else (``prefer``
    None) the first one coturn grants an allocation on; None when there is none or none
    of several works."""
    turns = turn_urls(servers)
    if prefer is not None:
        if prefer not in TRANSPORTS:
            raise ValueError(f"turn transport must be one of {TRANSPORTS}, got {prefer!r}")
        return next((u for u, _ in turns if turn_transport(u) == prefer), None)
    if len(turns) <= 1:
        return turns[0][0] if turns else None
    # all at once (a blocked port costs one timeout, not one each), the server's order wins
    works = await asyncio.gather(*(_allocates(url, server, timeout) for url, server in turns))
    # none works now (down, refused): no TURN at all, so aiortc does not wait on it either
    return next((url for (url, _), ok in zip(turns, works, strict=True) if ok), None)


def selected_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The nominated ICE pair of ``pc``'s first transport: candidate types and addresses
    (``local_type`` is ``relay`` when the media goes through TURN), or None before one."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport or transceiver.sender.transport
        if dtls is None:
            continue
        pair = webrtc_private.nominated_pair(webrtc_private.ice_connection(dtls))
        if pair is None:
            return None
        local, remote = pair.local_candidate, pair.remote_candidate
        return {"local_type": local.type, "remote_type": remote.type,
                "local": f"{local.host}:{local.port}", "remote": f"{remote.host}:{remote.port}",
                "relayed": local.type == "relay" or remote.type == "relay"}
    return None
