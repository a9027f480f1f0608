"""One signaling WebSocket: authenticate, then act on schema-checked messages.

A :class:`Session` lives as long as its socket. Every inbound message is rate-limited,
parsed (protocol.py), checked against the sender's role and lesson, and handled; every
failure becomes an ``error`` message with a code, and the socket stays usable unless the
failure is about who the sender is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from . import authz, metrics
from .auth import Claims, Role, mint_session_token, verify_token
from .errors import ClassroomError, ErrorCode
from .lanes import Lanes, lane_of
from .messages import core
from .messages.base import ServerMessage, peek_type
from .protocol import MAX_MESSAGE_BYTES, OUTGOING_INVALID, Message, parse_frame
from .ratelimit import TokenBucket
from .store import PresenceRecord, StoreUnavailable
from .turn import ice_servers_for

if TYPE_CHECKING:
    from .app import Node

logger = logging.getLogger(__name__)

# Errors about identity end the conversation; the rest leave the socket usable.
_FATAL = {ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED, ErrorCode.WRONG_LESSON}
_encode = msgspec.json.Encoder().encode
_checked: object = None  # the last dict checked (a broadcast sends one dict to many)


def relay_peer_id(peer_id: str, purpose: str) -> str:
    """The relay's id for one of a session's media connections (the relay knows no
    sessions): ``<session peer id>/<purpose>``."""
    return f"{peer_id}/{purpose}"


def session_peer_id(relay_id: str) -> tuple[str, str]:
    """``(session peer id, purpose)`` of a relay peer id (the inverse of relay_peer_id)."""
    peer_id, _, purpose = relay_id.rpartition("/")
    return peer_id, purpose


class Session:
    def __init__(self, node: Node, ws: web.WebSocketResponse, remote: str | None = None,
                 secure: bool = False) -> None:
        self.node = node
        self.ws = ws
        self.remote = remote  # client address (X-Forwarded-For from a trusted proxy)
        self.secure = secure  # wss (X-Forwarded-Proto from a trusted proxy): placement
        self.claims: Claims | None = None
        self.peer_id = ""
        self.lesson_id = ""
        self.presence: PresenceRecord
        self.media: set[str] = set()  # purposes with a live peer connection
        cfg = node.config
        self.bucket = TokenBucket(cfg.messages_per_second, cfg.message_burst)
        self.violations = 0
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._held: list[dict[str, Any]] | None = []  # events held until welcome is sent
        self.lanes = Lanes()  # messages that wait on the store or the relay (lanes.py)
        self._expiry: asyncio.TimerHandle | None = None  # fires at the token's exp

    # transport ------------------------------------------------------------------------
    async def send(self, message: ServerMessage | dict[str, Any]) -> None:
        """Send a typed server message, or a dict that must match its declared type
        (lesson events arrive as dicts from the store; a mismatch is logged and counted)."""
        if self.ws.closed:
            return
        if isinstance(message, ServerMessage):
            msg_type = message.type
        else:
            msg_type = message.get("type")
            self._check_outgoing(message)
        if self._held is not None and msg_type not in ("welcome", "error", "redirect"):
            # Lesson events can reach a joining session before its welcome is out:
            # hold them, so a client always sees welcome first.
            self._held.append(message)  # type: ignore[arg-type]
            return
        async with self._send_lock:
            try:
                await self.ws.send_str(_encode(message).decode())
            except (ConnectionError, RuntimeError):
                pass  # the read loop sees the close and cleans up

    def _check_outgoing(self, message: dict[str, Any]) -> None:
        global _checked
        if message is _checked:
            return
        problem = self.node.protocol.check_outgoing(message)
        if problem is None:
            _checked = message
            return
        msg_type = str(message.get("type"))[:64]
        OUTGOING_INVALID.labels(type=msg_type).inc()
        logger.warning("outgoing message does not match its type: %s", problem,
                       extra={"type": msg_type, "peer": self.peer_id})

    async def send_error(self, err: ClassroomError, ref: str | None = None) -> None:
        metrics.ERRORS.labels(code=err.code.value).inc()
        ref = ref or getattr(err, "ref", None)
        await self.send(core.ErrorMessage(code=err.code.value, message=err.message,
                                          ref=ref[:64] if ref else msgspec.UNSET))

    async def run(self) -> None:
        """Read frames until the socket closes; always clean up."""
        hello_deadline = asyncio.get_running_loop().call_later(
            self.node.config.hello_timeout, self._hello_timeout
        )
        try:
            async for frame in self.ws:
                if frame.type == WSMsgType.TEXT:
                    if not await self._on_text(frame.data):
                        break
                elif frame.type == WSMsgType.BINARY:
                    await self.send_error(
                        ClassroomError(ErrorCode.BAD_JSON, "binary frames are not accepted")
                    )
                elif frame.type == WSMsgType.ERROR:
                    err = self.ws.exception()
                    if err is not None and "too big" in str(err).lower():
                        metrics.ERRORS.labels(code=ErrorCode.TOO_LARGE.value).inc()
                    break
        finally:
            hello_deadline.cancel()
            if self._expiry is not None:
                self._expiry.cancel()
            await self.close()

    def _hello_timeout(self) -> None:
        if self.claims is None and not self.ws.closed:
            asyncio.ensure_future(
                self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"hello timeout")
            )

    async def _on_text(self, raw: str, queued: Message | None = None) -> bool:
        """Handle one frame; False when the socket must close. After hello a message that
        waits on the store or the relay goes to its lane (lanes.py), which handles it by a
        second call with ``queued`` set: same error replies, other messages not held up."""
        if queued is None and not self.bucket.take():
            self.violations += 1
            await self.send_error(ClassroomError(ErrorCode.RATE_LIMITED, "slow down"),
                                  peek_type(raw) if len(raw) <= 4096 else None)
            if self.violations >= self.node.config.max_rate_violations:
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"flood")
                return False
            return True
        ref = None
        try:
            msg = queued if queued is not None else self._parse(raw)
            ref = msg.type
            if queued is None and self.claims is not None and msg.type != "hello":
                # who may send what: the authorization table, before any lane, so a
                # refusal is told in order (the socket's lesson is the token's, from hello)
                authz.check_message(self.claims.role, msg.type, msg.get("purpose"))
            lane = lane_of(msg.type) if self.claims is not None else None
            if queued is None:
                metrics.MESSAGES.labels(type=msg.type).inc()
                if lane is not None:
                    if not self.lanes.submit(lane, lambda: self._on_text(raw, msg)):
                        if lane == "store":  # it waits on a store that does not answer
                            raise StoreUnavailable("lane full")
                        raise ClassroomError(ErrorCode.RATE_LIMITED,  # a flood of offers...
                                             f"too many {lane} messages waiting")
                    return True
            await self._dispatch(msg)
        except ClassroomError as err:
            if err.code == ErrorCode.TOO_LARGE:  # the ws (LimitedWebSocket) says too_large
                metrics.ERRORS.labels(code=err.code.value).inc()
                await self.ws.close(code=WSCloseCode.MESSAGE_TOO_BIG)
                return False
            await self.send_error(err, ref)
            if err.code in _FATAL:
                await self.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=err.code.value.encode()
                )
                return False
        except StoreUnavailable:
            await self.send_error(
                ClassroomError(ErrorCode.STORE_UNAVAILABLE, "lesson store unavailable, retry"), ref
            )
            if ref == "hello" and self.claims is None:
                # Not welcomed: close, so the page reconnects by its own backoff (0.5 s
                # doubling to 5 s) and joins once the store is back, instead of sitting on
                # an unwelcomed socket until its 30 s silence check (docs/cascade.md, Faults).
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER,
                                    message=b"store_unavailable")
                return False
        except Exception:
            logger.exception("handler failed", extra={"peer": self.peer_id, "type": ref})
            await self.send_error(ClassroomError(ErrorCode.INTERNAL, "internal error"), ref)
        return True

    def _parse(self, raw: str) -> Message:
        """The frame's typed message. A frame of a readable, known type whose body is bad
        is refused ``forbidden`` first when the sender's role may not send that type at
        all (the authorization table speaks before the schema: a refusal never depends
        on the body); otherwise the body's error, with ``ref``."""
        try:
            return parse_frame(raw, self.node.protocol)
        except ClassroomError as err:
            ref = getattr(err, "ref", None)
            if (self.claims is not None and ref in self.node.protocol and ref != "hello"
                    and err.code != ErrorCode.TOO_LARGE):
                action = authz.message_action(ref, getattr(err, "purpose", None))
                if action in authz.TABLE:
                    try:
                        authz.check_message(self.claims.role, ref,
                                            getattr(err, "purpose", None))
                    except ClassroomError as refused:
                        refused.ref = ref  # type: ignore[attr-defined]
                        raise refused from None
            raise

    # dispatch -------------------------------------------------------------------------
    async def _dispatch(self, msg: Message) -> None:
        if msg.type == "hello":
            await self._hello(msg)
            return
        if self.claims is None:
            raise ClassroomError(ErrorCode.NOT_AUTHENTICATED, "send hello first")
        # The role was checked against the authorization table in _on_text; the token's
        # expiry closes the session (_arm_expiry) unless the page refreshed it.
        feature = self.node.feature_for.get(msg.type)
        if feature is not None:
            await feature.handle(self, msg)
            return
        handler = getattr(self, "_on_" + msg.type.replace("-", "_"))
        await handler(msg)

    async def _hello(self, msg: Message) -> None:
        if self.claims is not None:
            raise ClassroomError(ErrorCode.ALREADY_AUTHENTICATED, "hello was already accepted")
        claims = verify_token(self.node.config.secret, msg.token)
        lesson_id = msg.lesson or claims.lesson
        if claims.lesson == "*" or not claims.may_access(lesson_id):
            raise ClassroomError(ErrorCode.WRONG_LESSON, "this link is for another lesson")
        for feature in self.node.features:  # placement: a node over its limit sends it on
            elsewhere = await feature.place(self, claims, msg)
            if elsewhere is not None:
                await self.send(elsewhere)
                await self.ws.close(code=WSCloseCode.OK, message=b"redirect")
                return
        hub = self.node.hub
        lesson = await hub.ensure_lesson(
            lesson_id,
            **({"teacher": claims.name, "school": claims.school}
               if claims.role == Role.TEACHER else {}),
        )
        self.lesson_id = lesson_id
        self.peer_id = f"{claims.role.value}-{uuid.uuid4().hex[:10]}"
        self.presence = PresenceRecord(
            peer_id=self.peer_id,
            lesson=lesson_id,
            role=claims.role.value,
            name=claims.name or claims.sub,
            school=claims.school,
            node=self.node.config.node_id,
        )
        await hub.join(self)
        self.claims = claims
        if claims.cap_kbps and claims.school:
            self.node.relay.set_cap(lesson_id, claims.school, claims.cap_kbps * 1000)
        try:
            await self._welcome(claims, lesson)
        except BaseException:
            self.claims = None  # a hello that failed on the store may be retried
            await hub.leave(self)
            raise
        self._arm_expiry()
        held, self._held = self._held or [], None
        for message in held:
            await self.send(message)
        logger.info(
            "hello",
            extra={"peer": self.peer_id, "role": claims.role.value, "lesson": self.lesson_id,
                   "school": claims.school, "addr": self.remote},
        )

    async def _welcome(self, claims: Claims, lesson: Any) -> None:
        hub, cfg, lesson_id = self.node.hub, self.node.config, self.lesson_id
        extra: dict[str, Any] = {}
        for feature in self.node.features:
            extra.update(await feature.welcome(self))
        await self.send(
            {
                **extra,
                "type": "welcome",
                "peer_id": self.peer_id,
                "role": claims.role.value,
                "lesson": lesson_id,
                "name": self.presence.name,
                "school": claims.school,
                "lesson_state": lesson.state,
                "lesson_info": lesson.to_json(),
                "roster": await hub.roster(lesson_id),
                "server_time": time.time(),
                "ice_servers": ice_servers_for(cfg.ice_servers, cfg.turn, self.peer_id),
                "media": {"publisher": self.node.relay_has_publisher(lesson_id)},
                "limits": {
                    "max_message_bytes": MAX_MESSAGE_BYTES,
                    "messages_per_second": cfg.messages_per_second,
                },
                **self._renewal(claims),
            }
        )

    # token lifetime ---------------------------------------------------------------------
    def _renewal(self, claims: Claims) -> dict[str, Any]:
        """Renew the session with ``claims`` (just verified, this session's identity): a
        fresh short-lived ``session_token`` for the page to refresh with, and the session
        lasts until the later of its exp and the token's (``token_expires``). That is no
        more than the page would get by reconnecting with the token it just presented."""
        out: dict[str, Any] = {}
        minted = mint_session_token(self.node.config.secret, claims,
                                    int(self.node.config.session_token_ttl))
        exp = max(claims.exp, self.claims.exp if self.claims is not None else 0)
        if minted is not None:
            out["session_token"], out["session_expires"] = minted
            exp = max(exp, minted[1])
        self.claims = dataclasses.replace(claims, exp=exp)
        out["token_expires"] = exp
        return out

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self.claims is not None:
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, self.claims.exp - time.time()), self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if self.claims is None or self.ws.closed:
            return
        if self.claims.exp > time.time():
            self._arm_expiry()  # refreshed meanwhile
            return
        self.node.spawn(self._close_expired())

    async def _close_expired(self) -> None:
        await self.send_error(ClassroomError(
            ErrorCode.TOKEN_EXPIRED, "the session's token expired (refresh it before exp)"))
        await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"token_expired")

    async def _on_refresh(self, msg: Message) -> None:
        """Renew the session with a token of the same identity (the latest session token,
        or a new link's). A bad or expired token ends the session as at hello."""
        current = self.claims
        assert current is not None
        claims = verify_token(self.node.config.secret, msg.token)
        if (claims.sub, claims.role, claims.lesson, claims.school) != (
                current.sub, current.role, current.lesson, current.school):
            raise ClassroomError(ErrorCode.FORBIDDEN,
                                 "refresh takes a token of the same sub, role, lesson, school")
        renewal = self._renewal(claims)
        self._arm_expiry()
        cfg = self.node.config
        # fresh TURN credentials too: a media reconnect late in a long session must not
        # present a username coturn already refuses as expired
        await self.send({"type": "refreshed", "server_time": time.time(), **renewal,
                         "ice_servers": ice_servers_for(cfg.ice_servers, cfg.turn,
                                                        self.peer_id)})

    async def _on_ping(self, msg: core.Ping) -> None:
        await self.send(core.Pong(ts=msg.ts, server_time=time.time()))

    async def _on_offer(self, msg: core.Offer) -> None:
        purpose = msg.purpose
        # As this node knows it (stored or announced): a frozen store must not hold up media.
        hub = self.node.hub
        lesson = hub.known_lesson(self.lesson_id) or await hub.get_lesson(self.lesson_id)
        if lesson.state == "ended":
            raise ClassroomError(ErrorCode.LESSON_ENDED, "the lesson has ended")
        rid = relay_peer_id(self.peer_id, purpose)
        relay, sdp = self.node.relay, msg.sdp
        school = (self.claims.school if self.claims is not None else "") or None
        if purpose == "publish":
            call = relay.publish(self.lesson_id, rid, sdp)
        elif purpose == "uplink":
            call = relay.publish_uplink(self.lesson_id, rid, sdp, school=school)
        elif purpose == "grid":
            call = relay.subscribe_grid(self.lesson_id, rid, sdp)
        else:
            call = relay.subscribe(self.lesson_id, rid, sdp, school=school)
        answer = await self.node.relay_call(call)
        self.media.add(purpose)
        self.node.sessions_by_relay_id[rid] = self
        await self.send(core.Answer(sdp=answer, purpose=purpose))
        for feature in self.node.features:
            await feature.media_started(self, purpose)

    async def _on_ice(self, msg: core.Ice) -> None:
        purpose = msg.purpose
        if purpose not in self.media:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, f"no {purpose} connection to add ICE to")
        candidate = {"candidate": msg.candidate, "sdpMid": msg.sdpMid,
                     "sdpMLineIndex": msg.sdpMLineIndex}
        await self.node.relay_call(
            self.node.relay.add_ice_candidate(relay_peer_id(self.peer_id, purpose), candidate)
        )

    async def _on_start_lesson(self, msg: core.StartLesson) -> None:
        await self._set_lesson_state("live")

    async def _on_end_lesson(self, msg: core.EndLesson) -> None:
        await self._set_lesson_state("ended")

    async def _set_lesson_state(self, state: str) -> None:
        """Idempotent: a lesson already in ``state`` changes nothing, and the sender (only)
        is told the current ``lesson``; a change is broadcast to every socket."""
        hub = self.node.hub
        before = await hub.ensure_lesson(self.lesson_id)  # (start/end are rare: one read)
        lesson = await hub.set_state(self.lesson_id, state)
        if before.state == state:
            await self.send({"type": "lesson", "lesson_state": lesson.state,
                             "lesson_info": lesson.to_json()})

    async def _on_low_bandwidth(self, msg: core.LowBandwidth) -> None:
        self.node.relay.set_low_bandwidth(relay_peer_id(self.peer_id, "subscribe"), msg.on)
        await self.send(core.Done(ref=msg.type))

    # media state from the relay -------------------------------------------------------
    async def tier_changed(self, tier: str) -> None:
        if self.presence.tier == tier:
            return
        self.presence.tier = tier
        try:
            await self.node.hub.update_presence(self)
        except StoreUnavailable:
            pass

    async def media_state_changed(self, state: str) -> None:
        if self.presence.media_state == state:
            return
        self.presence.media_state = state
        try:
            await self.node.hub.update_presence(self)
        except StoreUnavailable:
            pass

    async def close(self) -> None:
        """Release media and presence once; also after a hello that failed half-way."""
        if not self.peer_id or self._closed:
            return
        self._closed = True
        await self.lanes.close()  # a message half-way finishes (or is cancelled) first
        claims, self.claims = self.claims, None
        for purpose in list(self.media):
            rid = relay_peer_id(self.peer_id, purpose)
            self.node.sessions_by_relay_id.pop(rid, None)
            try:
                await self.node.relay.remove_peer(rid)
            except Exception:
                logger.exception("relay cleanup failed", extra={"peer": rid})
        self.media.clear()
        if claims is not None:
            for feature in self.node.features:
                try:
                    await feature.session_closed(self, claims)
                except Exception:  # noqa: BLE001 - presence must still be released
                    logger.exception("feature cleanup failed",
                                     extra={"peer": self.peer_id, "feature": feature.name})
        await self.node.hub.leave(self)
        logger.info("bye", extra={"peer": self.peer_id, "role": self.presence.role,
                                  "lesson": self.lesson_id})
