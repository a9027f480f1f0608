"""Links people can use: the base URL other machines reach, and whole page links.

A link that says 127.0.0.1 is useless to the other school, so when the server is bound to
all interfaces the link uses this machine's LAN address (the address of the interface
holding the default route, else the first non-loopback one); ``--public-url`` (a proxy or
a DNS name) beats both. Links are https when the server itself serves TLS.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from urllib.parse import quote, urlsplit

ALL_INTERFACES = ("0.0.0.0", "::", "")
# The page a token of each role opens.
ROLE_PAGES = {"teacher": "teach", "classroom": "class", "student": "answer"}
_SIOCGIFADDR = 0x8915


def interface_addresses() -> dict[str, str]:
    """IPv4 address of each interface that has one (Linux ioctl; empty elsewhere)."""
    found: dict[str, str] = {}
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            try:
                packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on it
            found[name] = socket.inet_ntoa(packed[20:24])
    return found


def _default_route_interface() -> str | None:
    try:
        with open("/proc/net/route") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if len(fields) > 1 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def lan_address() -> str | None:
    """This machine's address on its LAN, or None when it has only loopback."""
    addresses = interface_addresses()
    preferred = _default_route_interface()
    if preferred in addresses and not addresses[preferred].startswith("127."):
        return addresses[preferred]
    for address in addresses.values():
        if not address.startswith("127."):
            return address
    return None


def _host_for_url(host: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host


def listen_base(host: str, port: int, tls: bool) -> str:
    """The base URL a person on another machine can open for a server bound to host:port."""
    scheme = "https" if tls else "http"
    shown = host
    if host in ALL_INTERFACES:
        shown = lan_address() or "127.0.0.1"
    return f"{scheme}://{_host_for_url(shown)}:{port}"


def check_public_url(url: str) -> str:
    """``https://school.example[/prefix]`` without a trailing slash; ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--public-url must be an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"--public-url cannot hold a query or a fragment, got {url!r}")
    return url.strip().rstrip("/")


def page_link(base: str, role: str, lesson: str, token: str) -> str:
    """The whole link for a token: page of the role, the token in the fragment."""
    page = ROLE_PAGES.get(role)
    if page is None:
        raise ValueError(f"no page to link for role {role!r} (links exist for "
                         f"{', '.join(ROLE_PAGES)})")
    return f"{base}/{page}/{quote(lesson, safe='')}#token={token}"


def is_secure_origin(base: str) -> bool:
    """Whether browsers treat pages under ``base`` as a secure context (camera allowed)."""
    parts = urlsplit(base)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.") or host.endswith(
        ".localhost")
