"""One configuration object for a node, with documented defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .turn import TurnSettings


def _env_recording() -> bool:
    return os.environ.get("CLASSROOM_RECORDING", "1").strip().lower() not in (
        "0", "false", "off", "no")


def positive_number(text: str) -> float:
    """A positive finite number (retention days, quota GB), else a clear ValueError."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"expected a positive number, got {text!r}")
    return value


def _env_positive(name: str) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return positive_number(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    secret: str = ""  # HS256 key; `classroom serve` makes one up when none is given
    redis_url: str | None = None  # None: in-process memory store
    library: Path = field(default_factory=lambda: Path.cwd() / "library")
    ice_servers: list[dict] = field(default_factory=list)  # no public STUN by default
    turn: TurnSettings | None = None  # --turn-url/--turn-secret: per-peer credentials
    presence_ttl: float = 30.0  # seconds a peer stays in the roster without a refresh
    hello_timeout: float = 10.0  # seconds a socket may stay silent before `hello`
    http_header_timeout: float = 15.0  # a request head must arrive within this (http_guard)
    http_body_timeout: float = 30.0  # a request body must arrive within this
    max_connections_per_address: int = 2048  # per IP (0: none): one school NAT
    session_token_ttl: float = 3600.0  # life of the token welcome/refreshed hand a page
    messages_per_second: float = 20.0
    message_burst: float = 40.0
    max_rate_violations: int = 200  # dropped messages before a flooding socket is closed
    ws_heartbeat: float = 15.0  # WebSocket ping interval; dead peers are dropped
    roster_poll: float = 5.0  # seconds between roster checks (catches expired peers)
    video_bitrate: int = 1_000_000
    keyframe_interval: float = 2.0
    # recording (issue 6): `classroom serve` flags, these environment variables as defaults
    recording: bool = field(default_factory=_env_recording)  # CLASSROOM_RECORDING=0: off
    retention_days: float | None = field(  # None: keep recordings
        default_factory=lambda: _env_positive("CLASSROOM_RETENTION_DAYS"))
    library_quota_gb: float | None = field(  # None: no quota
        default_factory=lambda: _env_positive("CLASSROOM_LIBRARY_QUOTA_GB"))
    node_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    # reverse proxies whose X-Forwarded-* headers are believed, besides loopback
    trusted_proxies: list[str] = field(default_factory=list)  # --trusted-proxy CIDR
    link_url: str | None = None  # this node's own address for other nodes (cascade links)
    public_url: str | None = None  # the base URL browsers reach this node at (node record)
    # placement (docs/cascade.md "Placement"): over these, new classrooms go to another node
    max_subscribers: int | None = None  # --max-subscribers N: classrooms this node takes
    max_cpu: float | None = None  # --max-cpu F: cores this process may use (0.9 of one)
    rtc_ports: tuple[int, int] | None = None  # --rtc-ports LOW-HIGH: media UDP ports
    # a school's week: the district's local time (timetable slots, statistics days)
    timezone: str = field(default_factory=lambda: os.environ.get("CLASSROOM_TZ",
                                                                 "Asia/Shanghai"))
    overrun_minutes: float = 10.0  # --overrun-minutes: a timetable lesson ends at its end + this


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
