"""The WebSocket frame limit, one behaviour: ``error too_large`` then close 1009.

The app checks each frame's UTF-8 size against ``MAX_MESSAGE_BYTES`` (protocol.py) and
aiohttp's ``max_msg_size`` is set above it (:data:`TRANSPORT_LIMIT`) only to bound memory.
A frame over the transport limit is closed by aiohttp itself (1009) from inside
``receive()``; :class:`LimitedWebSocket` sends the same ``too_large`` error first, so a
client sees one behaviour at every size.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSCloseCode, web

from .errors import ClassroomError, ErrorCode
from .protocol import MAX_MESSAGE_BYTES

TRANSPORT_LIMIT = 4 * MAX_MESSAGE_BYTES
"""aiohttp's own cap (bytes): frames between the two limits get the app's answer."""


def too_large_error() -> ClassroomError:
    return ClassroomError(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE_BYTES} bytes")


class LimitedWebSocket(web.WebSocketResponse):
    """A WebSocketResponse that tells the client ``too_large`` before any 1009 close."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_msg_size", TRANSPORT_LIMIT)
        super().__init__(**kwargs)
        self.too_large_sent = False

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"",
                    drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed and not self.too_large_sent:
            self.too_large_sent = True
            body = {"type": "error", **too_large_error().to_json()}
            try:
                await self.send_str(json.dumps(body))
            except (ConnectionError, RuntimeError):
                pass  # the peer is gone: the close below is all that is left
            message = message or b"too_large"
        return await super().close(code=code, message=message, drain=drain)
