"""The test link's added delay (udp_delay.UdpDelay) holds datagrams as long as it says."""

from __future__ import annotations

import socket
import time

from tests.glass.udp_delay import UdpDelay


def test_datagrams_are_held_for_the_delay_each_way() -> None:
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(2)
    link = UdpDelay(("127.0.0.1", 0), echo.getsockname(), down=0.08, up=0.02)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        for n in range(3):
            start = time.monotonic()
            client.sendto(b"ping %d" % n, link.address)
            data, via = echo.recvfrom(100)
            assert data == b"ping %d" % n
            assert time.monotonic() - start >= 0.02
            echo.sendto(b"pong %d" % n, via)
            answer, _ = client.recvfrom(100)
            took = time.monotonic() - start
            assert answer == b"pong %d" % n
            assert 0.1 <= took < 0.3, took
        assert (link.up_packets, link.down_packets) == (3, 3)
    finally:
        link.close()
        client.close()
        echo.close()
