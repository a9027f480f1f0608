"""Batched datagram reads (media_relay/sockets.py) on real UDP sockets."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from media_relay import sockets


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.calls_per_wakeup: list[int] = []

    def datagram_received(self, data: bytes, addr) -> None:  # noqa: ANN001
        self.data.append(data)


async def flood_while_blocked(count: int) -> tuple[list[bytes], int]:
    """Send ``count`` datagrams while the loop is blocked, then let it read them; returns
    what was received and how many loop iterations that took."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Collect, local_addr=("127.0.0.1", 0))
    try:
        addr = transport.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for n in range(count):
                out.sendto(b"%d" % n, addr)
        iterations = 0
        deadline = time.monotonic() + 5
        while len(protocol.data) < count and time.monotonic() < deadline:
            await asyncio.sleep(0)  # one loop iteration: one readiness event per socket
            iterations += 1
        return protocol.data, iterations
    finally:
        transport.close()


@pytest.fixture
def restore_reads():
    yield
    sockets.uninstall_batched_reads()
    sockets.install_batched_reads()  # the relay installs it process-wide; keep it so


async def test_batched_reads_drain_a_backlog_in_few_iterations(restore_reads) -> None:
    sockets.uninstall_batched_reads()
    got, one_by_one = await flood_while_blocked(100)
    assert got == [b"%d" % n for n in range(100)]
    assert sockets.install_batched_reads()
    got, batched = await flood_while_blocked(100)
    assert got == [b"%d" % n for n in range(100)]  # nothing lost, order kept
    assert one_by_one >= 100 > batched
    assert batched <= 100 // sockets.READ_BATCH + 2


async def test_install_is_idempotent(restore_reads) -> None:
    assert sockets.install_batched_reads()
    assert sockets.install_batched_reads()
    from asyncio import selector_events
    assert selector_events._SelectorDatagramTransport._read_ready is \
        sockets._batched_read_ready
