"""A UDP forwarder that holds every datagram for a fixed time: added one-way delay.

This kernel has no ``netem`` (/work/shared/NETWORK-TESTS.md), so a link's delay is added in
user space. ``UdpDelay(("10.77.3.1", 0), ("10.77.3.1", 3478), down=0.1)`` listens on the
first address; each client gets its own socket towards ``upstream``; datagrams from the
client go upstream after ``up`` seconds, the answers go back after ``down`` seconds (order
kept: one timer per datagram, equal delays). It runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

Address = tuple[str, int]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpDelay, client: Address) -> None:
        self.owner = owner
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        owner = self.owner
        owner.down_packets += 1
        owner.loop.call_later(owner.down, owner.send_down, data, self.client)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpDelay) -> None:
        self.owner = owner

    def connection_made(self, transport: Any) -> None:
        self.owner.listener = transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        owner = self.owner
        owner.up_packets += 1
        owner.loop.call_later(owner.up, owner.send_up, data, addr)


class UdpDelay:
    def __init__(self, listen: Address, upstream: Address, *, down: float = 0.0,
                 up: float = 0.0) -> None:
        self.upstream = upstream
        self.down = down
        self.up = up
        self.up_packets = 0
        self.down_packets = 0
        self.listener: asyncio.DatagramTransport | None = None
        self._clients: dict[Address, _Upstream] = {}
        self._pending: dict[Address, list[bytes]] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="udp-delay")
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(listen), self.loop).result(5)
        assert self.listener is not None
        self.address: Address = self.listener.get_extra_info("sockname")[:2]

    async def _listen(self, listen: Address) -> None:
        await self.loop.create_datagram_endpoint(lambda: _Listener(self), local_addr=listen)

    def send_up(self, data: bytes, client: Address) -> None:
        upstream = self._clients.get(client)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.sendto(data)
            return
        pending = self._pending.setdefault(client, [])
        pending.append(data)
        if len(pending) == 1:  # the first datagram of this client: open its socket
            self.loop.create_task(self._open(client))

    async def _open(self, client: Address) -> None:
        _, protocol = await self.loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=self.upstream)
        self._clients[client] = protocol  # type: ignore[assignment]
        for data in self._pending.pop(client, []):
            protocol.transport.sendto(data)  # type: ignore[attr-defined]

    def send_down(self, data: bytes, client: Address) -> None:
        if self.listener is not None:
            self.listener.sendto(data, client)

    def close(self) -> None:
        def stop() -> None:
            for upstream in self._clients.values():
                if upstream.transport is not None:
                    upstream.transport.close()
            if self.listener is not None:
                self.listener.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self._thread.join(5)
