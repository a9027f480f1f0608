"""A teacher or classroom without a browser: WebSocket signaling plus an aiortc peer.

    async with ClassroomClient(base_url, token) as c:     # hello / welcome
        await c.subscribe()                               # classroom: receive media
        await c.wait_for(lambda: c.video_frames > 30, timeout=10)

Every message received is kept in ``messages``; ``next_message(type)`` waits for one.
A ``redirect`` at hello (a node over its limit, docs/cascade.md "Placement") is followed as
a page follows it: the socket opens at the node it names, whose hello says ``redirected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media_relay import webrtc_private

from . import playout
from .ice import pick_turn_url, rtc_ice_servers, selected_pair
from .media import opus_encoder, receive_codecs


class ProtocolError(Exception):
    """The server answered with an ``error`` message."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = message.get("code")
        self.body = message


def redirect_base(message: dict[str, Any]) -> str | None:
    """The base URL a ``redirect`` names if it may be followed (http/https, a host, no
    user info, query or fragment), else None."""
    url = message.get("url")
    if not isinstance(url, str) or len(url) > 256 or any(c in url for c in "@?#\\ "):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url.rstrip("/")


class ClassroomClient:
    def __init__(self, base_url: str, token: str, *, lesson: str | None = None,
                 playout_buffers: bool = True, video_codec: str | None = None,
                 turn_transport: str | None = None, follow_redirects: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        """The node the socket is on (the one a ``redirect`` named, after one)."""
        self.follow_redirects = follow_redirects
        self.redirects: list[dict[str, Any]] = []
        """The ``redirect`` messages followed, in order."""
        self.playout_buffers = playout_buffers
        """Give up on lost packets after a deadline as a browser does (classroom_client.playout);
        False keeps aiortc's buffers, which stall behind any packet that is never recovered."""
        self.buffers: dict[str, playout.PlayoutBuffer] = {}
        self.video_codec = video_codec
        """``"h264"``: offer only H.264 (constrained baseline 42e01f, packetization-mode 1)
        to receive, as an old TV box does; None: aiortc's default (VP8 first)."""
        self.turn_transport = turn_transport
        """``udp``/``tcp``/``tls``: the TURN URL of that transport from ``welcome``; None:
        the first one coturn grants an allocation on (aiortc uses one TURN URL only)."""
        self.turn_url: str | None = None
        """The TURN URL the peer connections use (None: no TURN in ``welcome``)."""
        self.video_size: tuple[int, int] | None = None
        """Width x height of the newest decoded video frame."""
        self.video_keyframes = 0
        """Decoded video frames that were keyframes (a join, a PLI, a tier switch)."""
        self.token = token
        self.lesson = lesson
        self.welcome: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.lesson_state = "waiting"
        self.roster: list[dict[str, Any]] = []
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.video_frames = 0
        self.audio_frames = 0
        self.first_video_at: float | None = None
        self.first_audio_at: float | None = None
        self.last_audio_at: float | None = None
        self.max_audio_gap = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    # lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> ClassroomClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 10.0) -> dict[str, Any]:
        """Open the socket and say hello; returns ``welcome`` or raises ProtocolError
        (a ``redirect`` that is not followed is raised too, as its message)."""
        self._session = aiohttp.ClientSession()
        while True:
            ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
            self._ws = await self._session.ws_connect(ws_url, heartbeat=20)
            self._reader = asyncio.ensure_future(self._read())
            hello: dict[str, Any] = {"type": "hello", "token": self.token}
            if self.lesson:
                hello["lesson"] = self.lesson
            if self.redirects:
                hello["redirected"] = len(self.redirects)  # the node it names accepts
            mark = len(self.messages)
            await self.send(hello)
            reply = await self.next_message(("welcome", "error", "redirect"),
                                            timeout=timeout, since=mark)
            if reply["type"] == "error":
                raise ProtocolError(reply)
            if reply["type"] != "redirect":
                break
            target = redirect_base(reply)
            if not self.follow_redirects or target is None or self.redirects:
                raise ProtocolError({"code": "redirect", "message": str(reply)})
            self.redirects.append(reply)
            await self._ws.close()
            await asyncio.gather(self._reader, return_exceptions=True)
            self.base_url = target
        self.welcome = reply
        self.lesson_state = reply["lesson_state"]
        self.roster = reply["roster"]
        self.turn_url = await pick_turn_url(reply.get("ice_servers", []), self.turn_transport)
        return reply

    async def close(self) -> None:
        for pc in list(self.pcs.values()):
            await pc.close()
        self.pcs.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def peer_id(self) -> str:
        return self.welcome.get("peer_id", "")

    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed

    # messages -------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, data: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(data)

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            kind = message.get("type")
            if kind == "error":
                self.errors.append(message)
            elif kind == "lesson":
                self.lesson_state = message["lesson_state"]
            elif kind == "roster":
                self.roster = message["peers"]
            async with self._changed:
                self.messages.append(message)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def next_message(
        self, types: str | tuple[str, ...], *, timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None, since: int | None = None,
    ) -> dict[str, Any]:
        """The first message of ``types`` (after index ``since``) matching ``where``."""
        wanted = (types,) if isinstance(types, str) else types
        start = len(self.messages) if since is None else since

        def find() -> dict[str, Any] | None:
            for message in self.messages[start:]:
                if message.get("type") in wanted and (where is None or where(message)):
                    return message
            return None

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (found := find()) is None:
                    if self.closed and self._reader is not None and self._reader.done():
                        raise ConnectionError(f"socket closed while waiting for {wanted}")
                    await self._changed.wait()
                return found

        return await asyncio.wait_for(wait(), timeout)

    async def request(self, message: dict[str, Any], reply: str, timeout: float = 15.0
                      ) -> dict[str, Any]:
        """Send and wait for ``reply`` or an ``error`` about this message type."""
        mark = len(self.messages)
        await self.send(message)
        got = await self.next_message(
            (reply, "error"), timeout=timeout, since=mark,
            where=lambda m: m["type"] == reply or m.get("ref") == message["type"],
        )
        if got["type"] == "error":
            raise ProtocolError(got)
        return got

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0,
                       interval: float = 0.05) -> None:
        """Poll ``condition`` until true or raise TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met before the deadline")
            await asyncio.sleep(interval)

    # lesson actions -------------------------------------------------------------------
    async def start_lesson(self) -> dict[str, Any]:
        return await self.request({"type": "start-lesson"}, "lesson")

    async def end_lesson(self) -> dict[str, Any]:
        return await self.request({"type": "end-lesson"}, "lesson")

    # media ----------------------------------------------------------------------------
    def _new_pc(self) -> RTCPeerConnection:
        servers = rtc_ice_servers(self.welcome.get("ice_servers", []), self.turn_url)
        return RTCPeerConnection(RTCConfiguration(iceServers=servers))

    def selected_pair(self, purpose: str = "subscribe") -> dict[str, Any] | None:
        """The ICE pair the ``purpose`` connection uses (``local_type`` ``relay``: TURN)."""
        pc = self.pcs.get(purpose)
        return selected_pair(pc) if pc is not None else None

    async def _negotiate(self, pc: RTCPeerConnection, purpose: str) -> None:
        await pc.setLocalDescription(await pc.createOffer())  # gathers host candidates
        reply = await self.request(
            {"type": "offer", "purpose": purpose, "sdp": pc.localDescription.sdp}, "answer"
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))

    async def publish(self, video: MediaStreamTrack | None, audio: MediaStreamTrack | None,
                      *, audio_bitrate: int | None = 32_000) -> RTCPeerConnection:
        """Teacher: send camera and microphone tracks to the relay. Audio is Opus at
        ``audio_bitrate`` with in-band FEC, as a browser sends it and as the relay forwards
        it to every tier (None: aiortc's own encoder, 96 kbit/s, no FEC)."""
        await self._drop_pc("publish")
        pc = self._new_pc()
        for track in (video, audio):
            if track is not None:
                transceiver = pc.addTransceiver(track, direction="sendonly")
                if track.kind == "audio" and audio_bitrate is not None:
                    webrtc_private.set_sender_encoder(transceiver.sender,
                                                      opus_encoder(audio_bitrate))
        self.pcs["publish"] = pc
        await self._negotiate(pc, "publish")
        return pc

    async def subscribe(self) -> RTCPeerConnection:
        """Classroom: receive the lesson's video and audio, counting what arrives."""
        await self._drop_pc("subscribe")
        pc = self._new_pc()
        for kind in ("video", "audio"):
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "video" and self.video_codec is not None:
                transceiver.setCodecPreferences(receive_codecs(self.video_codec))
            if self.playout_buffers:
                self.buffers[kind] = playout.install(transceiver.receiver, kind)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.ensure_future(self._consume(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self.pcs["subscribe"] = pc
        await self._negotiate(pc, "subscribe")
        return pc

    async def _drop_pc(self, purpose: str) -> None:
        old = self.pcs.pop(purpose, None)
        if old is not None:
            await old.close()

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    self.video_frames += 1
                    self.video_size = (frame.width, frame.height)
                    self.video_keyframes += bool(getattr(frame, "key_frame", False))
                    if self.first_video_at is None:
                        self.first_video_at = now
                else:
                    self.audio_frames += 1
                    if self.first_audio_at is None:
                        self.first_audio_at = now
                    elif self.last_audio_at is not None:
                        self.max_audio_gap = max(self.max_audio_gap, now - self.last_audio_at)
                    self.last_audio_at = now

    def connection_state(self, purpose: str) -> str:
        pc = self.pcs.get(purpose)
        return pc.connectionState if pc is not None else "none"
