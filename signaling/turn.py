"""Time-limited TURN credentials: the TURN REST scheme coturn checks with `use-auth-secret`.

The server and coturn share one secret; a browser is given only a username that carries
its own expiry and an HMAC of that username, so a leaked credential stops working at the
expiry and the shared secret never leaves the server::

    username   = "<expiry unix time>:<peer id>"
    credential = base64(HMAC-SHA1(secret, username))

coturn (``use-auth-secret`` + ``static-auth-secret``) recomputes the HMAC and refuses a
username whose timestamp is in the past. Every `welcome` carries fresh ones, so a page
that reconnects (or a new session) always gets credentials valid for ``ttl`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

DEFAULT_TTL_SECONDS = 12 * 3600  # a school day; see docs/deployment.md
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 7 * 24 * 3600

# turn:host[:port][?transport=udp|tcp] and turns:host[:port][?transport=tcp]; host may be
# a name, an IPv4 address or a bracketed IPv6 address. No user:pass@ (that is --ice-server).
_TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


def parse_turn_url(url: str) -> str:
    """Check a `--turn-url` and return it unchanged, else a ValueError saying what is wrong."""
    match = _TURN_URL.fullmatch(url.strip())
    if match is None:
        if "@" in url:
            raise ValueError(f"--turn-url takes no user:password (the server makes them), "
                             f"got {url!r}")
        raise ValueError("--turn-url must look like turn:HOST[:PORT][?transport=udp|tcp] or "
                         f"turns:HOST[:PORT][?transport=tcp], got {url!r}")
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"--turn-url port out of range in {url!r}")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise ValueError(f"turns: runs over TLS on TCP, not udp: {url!r}")
    return url.strip()


def credentials(secret: str, peer_id: str, ttl: int,
                now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid for ``ttl`` seconds from ``now`` (coturn's REST scheme)."""
    expiry = int(time.time() if now is None else now) + int(ttl)
    username = f"{expiry}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnSettings:
    """`--turn-url` URLs, `--turn-secret` (never printed: repr hides it) and the TTL."""

    urls: tuple[str, ...]
    secret: str = field(repr=False)
    ttl: int = DEFAULT_TTL_SECONDS

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("--turn-secret needs at least one --turn-url")
        if not self.secret:
            raise ValueError("--turn-url needs --turn-secret (or CLASSROOM_TURN_SECRET)")
        if not MIN_TTL_SECONDS <= self.ttl <= MAX_TTL_SECONDS:
            raise ValueError(f"--turn-ttl must be {MIN_TTL_SECONDS}..{MAX_TTL_SECONDS} "
                             f"seconds, got {self.ttl}")
        for url in self.urls:
            parse_turn_url(url)

    def ice_server(self, peer_id: str, now: float | None = None) -> dict:
        """One RTCIceServer dict for this peer: every TURN URL, one fresh credential."""
        username, credential = credentials(self.secret, peer_id, self.ttl, now)
        return {"urls": list(self.urls), "username": username, "credential": credential}


def ice_servers_for(static: list[dict], turn: TurnSettings | None, peer_id: str,
                    now: float | None = None) -> list[dict]:
    """What `welcome.ice_servers` holds: the `--ice-server` entries, then this peer's TURN."""
    servers = [dict(s) for s in static]
    if turn is not None:
        servers.append(turn.ice_server(peer_id, now))
    return servers


def settings_from_args(urls: list[str], secret: str | None, ttl: int | None,
                       env_secret: str | None) -> TurnSettings | None:
    """The TURN settings of `classroom serve` flags (None when TURN is not configured)."""
    if not urls and not secret:  # CLASSROOM_TURN_SECRET alone (a shared env file): no TURN
        return None
    secret = secret or env_secret or ""
    return TurnSettings(urls=tuple(urls), secret=secret,
                        ttl=DEFAULT_TTL_SECONDS if ttl is None else ttl)
