"""Redis store: several signaling nodes share lessons.

Keys (prefix ``classroom:``):
  ``lesson:{id}``            JSON of the lesson record
  ``lessons``                ZSET of lesson ids by creation time
  ``peers:{lesson}``         SET of peer ids that may be present
  ``peer:{lesson}:{peer}``   JSON presence record with a TTL (Redis expires it)
  ``events:{lesson}``        pub/sub channel of lesson events (all nodes PSUBSCRIBE)
A node that dies stops refreshing its peers' keys, so they vanish after the TTL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .base import LessonEventHandler, LessonRecord, PresenceRecord, Store, StoreUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "classroom:"
EVENT_PATTERN = PREFIX + "events:*"

CALL_TIMEOUT = 1.5
"""Seconds one store call may take, pool wait and reconnect included, before it is
store_unavailable: a frozen Redis (SIGSTOP, a stalled VM) answers nobody, and a message
waiting on it must not wait long (docs/redis-outage.md)."""

PUBSUB_BACKOFF_MAX = 0.5
"""Longest pause between pub/sub reconnect attempts: readyz turns green and lessons are
rebuilt (LessonHub.reconcile) at most this long after Redis is back."""


def _k(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def connect(url: str, call_timeout: float = CALL_TIMEOUT) -> aioredis.Redis:
    """A Redis client that recovers from an outage by itself.

    * socket timeouts no longer than a call's deadline;
    * a command that meets a dead pooled connection (Redis restarted) is retried once on a
      fresh connection (redis-py's ``from_url`` retries nothing by default), but a timeout
      is not retried: a frozen Redis fails fast;
    * a connection idle for over a second is PINGed before use (health_check_interval);
    * a pool big enough for a burst of hellos (redis-py's default refuses the 101st
      concurrent command with MaxConnectionsError).
    """
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=min(1.0, call_timeout),
        socket_timeout=call_timeout,
        health_check_interval=1,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=1000,
    )


class RedisLink:
    """One Redis link with bounded calls: every command through :meth:`_call` ends within
    ``call_timeout`` or raises StoreUnavailable, and a failure drops the pool's idle
    connections (after a restart they are all dead) so the next calls start fresh.
    Used by the lesson store and by the features' stores (quiz answers, stage state)."""

    def __init__(self, url: str, *, call_timeout: float = CALL_TIMEOUT) -> None:
        self.url = url
        self.call_timeout = call_timeout
        self._redis = connect(url, call_timeout)
        self._last_purge = 0.0
        self._purge: asyncio.Task[None] | None = None

    async def _call(self, coro: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.call_timeout):
                return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            self._drop_idle_connections()
            raise StoreUnavailable(f"redis: {exc.__class__.__name__}") from exc

    def _drop_idle_connections(self) -> None:
        """Disconnect the pool's idle connections (not those other calls are using), at
        most twice a second: after a restart each of them would fail its next command."""
        now = time.monotonic()
        if now - self._last_purge < 0.5 or (self._purge is not None and not self._purge.done()):
            return
        self._last_purge = now

        async def purge() -> None:
            try:
                await self._redis.connection_pool.disconnect(inuse_connections=False)
            except (RedisError, OSError):
                pass

        self._purge = asyncio.get_running_loop().create_task(purge())

    async def ping(self) -> bool:
        """True when Redis answers within the call deadline (``/readyz``)."""
        try:
            async with asyncio.timeout(self.call_timeout):
                return bool(await self._redis.ping())
        except (TimeoutError, RedisError, OSError):
            self._drop_idle_connections()
            return False

    async def close(self) -> None:
        try:
            async with asyncio.timeout(3):
                await self._redis.aclose()
        except Exception:  # noqa: BLE001 - closing a dead link
            pass


FeatureRedis = RedisLink
"""The name the features' stores (quiz, stage) import."""


class RedisStore(RedisLink, Store):
    def __init__(self, url: str, *, presence_ttl: float = 30.0,
                 call_timeout: float = CALL_TIMEOUT) -> None:
        super().__init__(url, call_timeout=call_timeout)
        self.presence_ttl = presence_ttl
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self.pubsub_connected = asyncio.Event()

    async def start(self, on_event: LessonEventHandler) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen(on_event))

    async def _listen(self, on_event: LessonEventHandler) -> None:
        """Hear every lesson's events; survive Redis going away and coming back."""
        backoff = 0.2
        reconnecting = False
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(EVENT_PATTERN)
                if reconnecting:
                    # Events published while we were away are lost (pub/sub keeps none):
                    # tell the hub to resend what it holds from the stored state.
                    await on_event("*", {"type": "resync"})
                self.pubsub_connected.set()
                backoff = 0.2
                reconnecting = True
                while not self._closing:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "pmessage":
                        continue
                    lesson_id = msg["channel"][len(PREFIX + "events:") :]
                    try:
                        event = json.loads(msg["data"])
                    except ValueError:
                        logger.warning("dropping malformed lesson event on %s", msg["channel"])
                        continue
                    try:
                        await on_event(lesson_id, event)
                    except Exception:
                        logger.exception("lesson event handler failed")
                await _quiet_close(pubsub)
            except asyncio.CancelledError:
                await _quiet_close(pubsub)
                raise
            except (RedisError, OSError, StoreUnavailable) as exc:
                # StoreUnavailable: the resync after a reconnect met a stale pooled
                # connection; retry the whole reconnect rather than let this task die.
                self.pubsub_connected.clear()
                logger.warning("redis pub/sub lost (%s); retrying in %.1fs", exc, backoff)
                await _quiet_close(pubsub)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, PUBSUB_BACKOFF_MAX)

    async def close(self) -> None:
        if self._listener is not None:
            self._closing = True
            # redis-py can swallow a cancellation that lands inside a read; the loop
            # checks _closing each second, and we never wait on it for long.
            self._listener.cancel()
            await asyncio.wait([self._listener], timeout=3)
            self._listener = None
        await super().close()

    @property
    def events_connected(self) -> bool:
        return self.pubsub_connected.is_set()

    async def create_lesson(self, lesson: LessonRecord) -> bool:
        created = await self._call(
            self._redis.set(_k("lesson", lesson.id), json.dumps(lesson.to_json()), nx=True)
        )
        if created:
            await self._call(self._redis.zadd(_k("lessons"), {lesson.id: lesson.created_at}))
        return bool(created)

    async def get_lesson(self, lesson_id: str) -> LessonRecord | None:
        raw = await self._call(self._redis.get(_k("lesson", lesson_id)))
        return LessonRecord.from_json(json.loads(raw)) if raw else None

    async def save_lesson(self, lesson: LessonRecord) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_k("lesson", lesson.id), json.dumps(lesson.to_json()))
            pipe.zadd(_k("lessons"), {lesson.id: lesson.created_at})
            await self._call(pipe.execute())

    async def list_lessons(self) -> list[LessonRecord]:
        ids = await self._call(self._redis.zrange(_k("lessons"), 0, -1))
        if not ids:
            return []
        raws = await self._call(self._redis.mget([_k("lesson", i) for i in ids]))
        return [LessonRecord.from_json(json.loads(r)) for r in raws if r]

    async def put_presence(self, record: PresenceRecord) -> None:
        ttl_ms = max(1, int(self.presence_ttl * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_k("peer", record.lesson, record.peer_id), json.dumps(record.to_json()),
                     px=ttl_ms)
            pipe.sadd(_k("peers", record.lesson), record.peer_id)
            await self._call(pipe.execute())

    async def remove_presence(self, lesson_id: str, peer_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(_k("peer", lesson_id, peer_id))
            pipe.srem(_k("peers", lesson_id), peer_id)
            await self._call(pipe.execute())

    async def roster(self, lesson_id: str) -> list[PresenceRecord]:
        ids = sorted(await self._call(self._redis.smembers(_k("peers", lesson_id))))
        if not ids:
            return []
        raws = await self._call(self._redis.mget([_k("peer", lesson_id, i) for i in ids]))
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            await self._call(self._redis.srem(_k("peers", lesson_id), *gone))
        records = [PresenceRecord.from_json(json.loads(r)) for r in raws if r]
        return sorted(records, key=lambda r: r.joined_at)

    async def publish(self, lesson_id: str, event: dict[str, Any]) -> None:
        await self._call(self._redis.publish(_k("events", lesson_id), json.dumps(event)))


async def _quiet_close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (RedisError, OSError, RuntimeError):
        pass
