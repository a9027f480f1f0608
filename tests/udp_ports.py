"""UDP port helpers for tests of the fixed media port range (``--rtc-ports``)."""

from __future__ import annotations

import random
import socket


def candidate_ports(sdp: str) -> list[int]:
    """The ports of an SDP's ``a=candidate:`` lines."""
    return [int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")]


def free_udp_range(size: int) -> tuple[int, int]:
    """``size`` consecutive UDP ports free on every address, below the ephemeral range
    (32768-60999), so no other socket of this run is handed one by the kernel meanwhile."""
    for _ in range(200):
        low = random.randrange(20000, 30000)
        held = []
        try:
            for port in range(low, low + size):
                for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    held.append(sock)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((host, port))
            return low, low + size - 1
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free UDP port range found")
