"""The school database in Redis (nodes sharing one Redis): a hash per kind.

Keys: ``classroom:school:doc:{kind}`` HASH id -> JSON document;
``classroom:school:version`` the write counter. Every write is a MULTI that also INCRs
the version; :meth:`apply` WATCHes the version, runs the guard, then writes — if another
node wrote meanwhile, EXEC fails and the whole attempt (guard included) is retried.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.exceptions import RedisError, WatchError

from signaling.store.base import StoreUnavailable
from signaling.store.redis import RedisLink

from .db import Delete, Guard, Put, SchoolDB, check_kind, matches, unavailable

PREFIX = "classroom:school:"
VERSION_KEY = PREFIX + "version"
RETRIES = 20

_DELETE = """
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n > 0 then redis.call('INCR', KEYS[2]) end
return n
"""


def _key(kind: str) -> str:
    return PREFIX + "doc:" + check_kind(kind)


class RedisSchoolDB(SchoolDB):
    def __init__(self, url: str) -> None:
        self.link = RedisLink(url)
        self._delete = self.link._redis.register_script(_DELETE)

    async def start(self) -> None:
        """Nothing to open: the first call connects."""

    async def close(self) -> None:
        await self.link.close()

    async def _call(self, coro: Any) -> Any:
        try:
            return await self.link._call(coro)
        except StoreUnavailable as exc:
            raise unavailable(f"school database (redis) unavailable: {exc}; retry") from None

    @property
    def _redis(self) -> Any:
        return self.link._redis

    async def get(self, kind: str, id: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.hget(_key(kind), id))
        return json.loads(raw) if raw is not None else None

    async def list(self, kind: str, **equals: Any) -> list[dict[str, Any]]:
        raw = await self._call(self._redis.hgetall(_key(kind)))
        docs = (json.loads(raw[i]) for i in sorted(raw))
        return [d for d in docs if matches(d, equals)]

    async def put(self, kind: str, id: str, doc: dict[str, Any]) -> None:
        await self.apply([(kind, id, doc)], [])

    async def delete(self, kind: str, id: str) -> bool:
        removed = await self._call(self._delete(keys=[_key(kind), VERSION_KEY], args=[id]))
        return bool(removed)

    async def apply(self, puts: list[Put], deletes: list[Delete],
                    guard: Guard | None = None) -> None:
        writes = [(_key(k), i, json.dumps(d, ensure_ascii=False)) for k, i, d in puts]
        gone = [(_key(k), i) for k, i in deletes]
        for _ in range(RETRIES):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await self._call(pipe.watch(VERSION_KEY))
                    if guard is not None:
                        await guard(self)
                    pipe.multi()
                    for key, i in gone:
                        pipe.hdel(key, i)
                    for key, i, raw in writes:
                        pipe.hset(key, i, raw)
                    pipe.incr(VERSION_KEY)
                    await self._execute(pipe)
                    return
                except WatchError:
                    continue
        raise unavailable("school database busy: too many concurrent writes, retry")

    async def _execute(self, pipe: Any) -> Any:
        """EXEC within the call deadline; WatchError (another write) goes to the caller
        (RedisLink._call would turn it into an outage)."""
        try:
            async with asyncio.timeout(self.link.call_timeout):
                return await pipe.execute()
        except WatchError:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            raise unavailable(f"school database (redis) unavailable: "
                              f"{exc.__class__.__name__}; retry") from None

    async def version(self) -> int:
        return int(await self._call(self._redis.get(VERSION_KEY)) or 0)
