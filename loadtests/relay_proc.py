"""A relay in a process of its own for load tests: offer/answer over HTTP on 127.0.0.1.

    python -m loadtests.relay_proc --mode product|baseline|pinned --port P [--send-path tasks]

``product`` is :class:`media_relay.Relay` (encode once; ``--send-path batched``, the
default, or ``tasks``: ``RelayConfig.batched_send``); ``baseline`` is aiortc's
``MediaRelay`` (one encoder per subscriber); ``pinned`` is the product without rate
control, each subscriber pinned to the tier its id starts with (``mid-c4``).
Endpoints: ``POST /publish`` and ``POST /subscribe`` with ``{"peer_id", "sdp"}`` ->
``{"sdp"}``, ``GET /metrics``
(Prometheus), ``GET /stats``. Prints ``READY <port>`` when it listens.
``RELAY_SWITCH_INTERVAL=0.005`` sets the interpreter's GIL switch interval first
(experiments: the relay's media thread and event loop share the GIL); the product relay
then lowers it to ``RelayConfig.gil_switch_interval`` (1 ms) unless that is already lower.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from media_relay import Relay, RelayConfig, RelayError

LESSON = "bench"


class ProductRelay:
    """``pinned``: no rate control; a subscriber whose id starts with a tier name and ``-``
    (``low-c3``) is pinned to that tier (loadtests.abr)."""

    def __init__(self, send_path: str = "batched", pinned: bool = False) -> None:
        self.send_path = send_path
        self.pinned = pinned
        self.relay = Relay(RelayConfig(batched_send=send_path == "batched",
                                       rate_control=not pinned))

    async def publish(self, peer_id: str, sdp: str) -> str:
        return await self.relay.publish(LESSON, peer_id, sdp)

    async def subscribe(self, peer_id: str, sdp: str) -> str:
        answer = await self.relay.subscribe(LESSON, peer_id, sdp)
        tier = peer_id.split("-", 1)[0]
        if self.pinned and tier in self.relay.config.ladder:
            # before it connects: it attaches to that tier's rendition directly
            self.relay._peers[peer_id].set_tier(tier, "bench")  # noqa: SLF001 - load test
        return answer

    def stats(self) -> dict:
        return {"send_path": self.send_path, **self.relay.stats()}

    async def close(self) -> None:
        await self.relay.close()


class BaselineRelay:
    """aiortc's MediaRelay: every subscriber's sender encodes its own copy."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: dict[str, object] = {}
        self.pcs: list[RTCPeerConnection] = []
        self.drains: list[asyncio.Task] = []

    async def publish(self, peer_id: str, sdp: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)

        @pc.on("track")
        def on_track(track) -> None:
            self.sources[track.kind] = track
            # read the source even with no subscriber (aiortc decodes into an unbounded queue)
            self.drains.append(asyncio.ensure_future(self._drain(
                self.relay.subscribe(track, buffered=False))))

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    @staticmethod
    async def _drain(track) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    async def subscribe(self, peer_id: str, sdp: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        for kind in ("video", "audio"):
            if kind in self.sources:
                pc.addTrack(self.relay.subscribe(self.sources[kind], buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def stats(self) -> dict:
        return {"pcs": len(self.pcs)}

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        for task in self.drains:
            task.cancel()


def build_app(backend) -> web.Application:
    async def offer(request: web.Request, method) -> web.Response:
        body = await request.json()
        try:
            sdp = await method(body["peer_id"], body["sdp"])
        except RelayError as exc:
            return web.json_response({"error": exc.reason}, status=400)
        return web.json_response({"sdp": sdp})

    async def publish(request: web.Request) -> web.Response:
        return await offer(request, backend.publish)

    async def subscribe(request: web.Request) -> web.Response:
        return await offer(request, backend.subscribe)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"pid": os.getpid(), **backend.stats()})

    async def on_cleanup(app: web.Application) -> None:
        await backend.close()

    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(mode: str, port: int, send_path: str = "batched") -> None:
    if os.environ.get("RELAY_SWITCH_INTERVAL"):
        import sys
        sys.setswitchinterval(float(os.environ["RELAY_SWITCH_INTERVAL"]))
    backend = (ProductRelay(send_path, pinned=mode == "pinned")
               if mode in ("product", "pinned") else BaselineRelay())
    runner = web.AppRunner(build_app(backend), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"READY {site._server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("product", "baseline", "pinned"), default="product")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--send-path", choices=("batched", "tasks"), default="batched")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.mode, args.port, args.send_path))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
