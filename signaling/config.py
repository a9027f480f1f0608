"""One configuration object for a node, with documented defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    secret: str = ""  # HS256 key; `classroom serve` makes one up when none is given
    redis_url: str | None = None  # None: in-process memory store
    library: Path = field(default_factory=lambda: Path.cwd() / "library")
    ice_servers: list[dict] = field(default_factory=list)  # no public STUN by default
    presence_ttl: float = 30.0  # seconds a peer stays in the roster without a refresh
    hello_timeout: float = 10.0  # seconds a socket may stay silent before `hello`
    messages_per_second: float = 20.0
    message_burst: float = 40.0
    max_rate_violations: int = 200  # dropped messages before a flooding socket is closed
    ws_heartbeat: float = 15.0  # WebSocket ping interval; dead peers are dropped
    roster_poll: float = 5.0  # seconds between roster checks (catches expired peers)
    video_bitrate: int = 1_000_000
    keyframe_interval: float = 2.0
    node_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")


def parse_ice_server(url: str) -> dict:
    """`turn:user:pass@host:3478` or `stun:host:3478` -> RTCIceServer dict."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise ValueError(f"ICE server must be stun:, stuns:, turn: or turns: URL, got {url!r}")
    if "@" in rest:
        cred, _, host = rest.rpartition("@")
        user, _, password = cred.partition(":")
        return {"urls": f"{scheme}:{host}", "username": user, "credential": password}
    return {"urls": url}
