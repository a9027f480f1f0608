"""X-Forwarded-Proto / -Host / -For from a reverse proxy (nginx as the TLS front).

Behind a proxy every request comes from the proxy's address over plain http. The proxy
tells the real scheme, host and client in these headers; anyone else could forge them, so
they are believed only when the request's peer is a trusted proxy: loopback always (a
proxy on the same machine, the documented nginx site), plus the networks given with
``--trusted-proxy CIDR``. From a trusted peer the request is cloned with

* ``scheme`` from X-Forwarded-Proto (``http`` or ``https``, else ignored),
* ``host`` from X-Forwarded-Host (a plain ``host[:port]``, else ignored): the pages'
  Content-Security-Policy names the socket's origin with it,
* ``remote`` from X-Forwarded-For: the right-most address that is not itself a trusted
  proxy (the left-most entries are whatever the client claimed). The logs show it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IpNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),
                                   ipaddress.ip_network("::1/128"))
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def parse_networks(values: Iterable[str]) -> list[IpNetwork]:
    """``10.0.0.5`` or ``10.0.0.0/24`` -> networks; ValueError naming the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy wants an address or CIDR, got {value!r}") from None
    return networks


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def in_networks(text: str | None, networks: Iterable[IpNetwork]) -> bool:
    """Whether the address ``text`` (``v4``, ``v4:port``, ``[v6]:port``, v4-mapped v6) lies
    in one of ``networks``."""
    address = _address(text) if text else None
    return address is not None and any(address in net for net in networks)


class ForwardedHeaders:
    """Decides, per request, what the proxy headers say and whether to believe them."""

    def __init__(self, trusted: Iterable[IpNetwork] = ()) -> None:
        self.trusted = tuple(LOOPBACK) + tuple(trusted)

    def is_trusted(self, text: str | None) -> bool:
        return in_networks(text, self.trusted)

    def changes(self, peer: str | None, headers: Any) -> dict[str, str]:
        """The ``request.clone`` arguments for a request from ``peer`` with ``headers``."""
        if not self.is_trusted(peer):
            return {}
        out: dict[str, str] = {}
        proto = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            out["scheme"] = proto
        host = headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if host and _HOST.match(host):
            out["host"] = host
        hops = [h.strip() for h in headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # garbage: stop believing anything further left
            out["remote"] = str(address)
            if not any(address in net for net in self.trusted):
                break
        return out

    def middleware(self) -> Any:
        @web.middleware
        async def forwarded(request: web.Request, handler: Any) -> web.StreamResponse:
            changes = self.changes(request.remote, request.headers)
            if changes:
                request = request.clone(**changes)
            return await handler(request)

        return forwarded
