"""Two-way lesson state behind one interface: in-process memory or Redis.

Kept per lesson, so a reconnecting page and every node see the same thing:
  * the hand queue: classroom identity (token ``sub``) -> ``{peer_id, at}``; keyed by the
    classroom, not the socket, so a TV that reconnects keeps its place in the queue;
  * the stage: ``{peer_id, sub, name, school, at}`` or nothing;
  * the teacher's share flag;
  * uplinks: session peer id -> ``{peer_id, state, audio, video, muted}`` (the tiles);
  * muted classrooms (by ``sub``), so a muted classroom stays muted after a reload.

Redis keys (``{L}`` is a Redis Cluster hash tag, so a lesson's keys share a slot):
  classroom:stage:{L}:hands     HASH sub -> JSON {peer_id, at}
  classroom:stage:{L}:stage     JSON stage record
  classroom:stage:{L}:share     "1" while the teacher shares a screen
  classroom:stage:{L}:uplinks   HASH peer_id -> JSON uplink record
  classroom:stage:{L}:muted     SET of muted classroom subs
"""

from __future__ import annotations

import abc
import copy
import json
from typing import Any

from signaling.store.redis import FeatureRedis

PREFIX = "classroom:stage:"

# Clear the stage only if it still holds this peer (a newer call-on-stage wins).
_CLEAR_IF = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['peer_id'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class StageStore(abc.ABC):
    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # hands
    @abc.abstractmethod
    async def raise_hand(self, lesson: str, sub: str, peer_id: str, at: float) -> bool:
        """Queue ``sub``'s hand (an already raised hand keeps its place and takes the new
        peer id); True when it was not raised before."""

    @abc.abstractmethod
    async def lower_hand(self, lesson: str, sub: str) -> dict[str, Any] | None:
        """Take ``sub``'s hand out of the queue; the removed entry, or None."""

    @abc.abstractmethod
    async def hands(self, lesson: str) -> list[dict[str, Any]]:
        """``[{sub, peer_id, at}]`` oldest first."""

    # stage
    @abc.abstractmethod
    async def get_stage(self, lesson: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def set_stage(self, lesson: str, record: dict[str, Any] | None) -> None: ...

    @abc.abstractmethod
    async def clear_stage_if(self, lesson: str, peer_id: str) -> bool:
        """Clear the stage if ``peer_id`` holds it; True when it did."""

    # share
    @abc.abstractmethod
    async def get_share(self, lesson: str) -> bool: ...

    @abc.abstractmethod
    async def set_share(self, lesson: str, on: bool) -> None: ...

    # uplinks and mutes
    @abc.abstractmethod
    async def put_uplink(self, lesson: str, record: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def get_uplink(self, lesson: str, peer_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def drop_uplink(self, lesson: str, peer_id: str) -> None: ...

    @abc.abstractmethod
    async def uplinks(self, lesson: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def set_muted(self, lesson: str, sub: str, on: bool) -> None: ...

    @abc.abstractmethod
    async def is_muted(self, lesson: str, sub: str) -> bool: ...

    @abc.abstractmethod
    async def clear_lesson(self, lesson: str) -> None:
        """Forget the stage, hands, share and uplinks of an ended lesson."""


class MemoryStageStore(StageStore):
    """The embedded default; no await between a check and its write, so it is atomic."""

    def __init__(self) -> None:
        self._hands: dict[str, dict[str, dict[str, Any]]] = {}
        self._stage: dict[str, dict[str, Any]] = {}
        self._share: set[str] = set()
        self._uplinks: dict[str, dict[str, dict[str, Any]]] = {}
        self._muted: dict[str, set[str]] = {}

    async def raise_hand(self, lesson: str, sub: str, peer_id: str, at: float) -> bool:
        queue = self._hands.setdefault(lesson, {})
        entry = queue.get(sub)
        if entry is not None:
            entry["peer_id"] = peer_id
            return False
        queue[sub] = {"peer_id": peer_id, "at": at}
        return True

    async def lower_hand(self, lesson: str, sub: str) -> dict[str, Any] | None:
        entry = self._hands.get(lesson, {}).pop(sub, None)
        return {"sub": sub, **entry} if entry is not None else None

    async def hands(self, lesson: str) -> list[dict[str, Any]]:
        queue = self._hands.get(lesson, {})
        return sorted(({"sub": s, **e} for s, e in queue.items()), key=lambda e: e["at"])

    async def get_stage(self, lesson: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._stage.get(lesson))

    async def set_stage(self, lesson: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._stage.pop(lesson, None)
        else:
            self._stage[lesson] = copy.deepcopy(record)

    async def clear_stage_if(self, lesson: str, peer_id: str) -> bool:
        current = self._stage.get(lesson)
        if current is not None and current.get("peer_id") == peer_id:
            del self._stage[lesson]
            return True
        return False

    async def get_share(self, lesson: str) -> bool:
        return lesson in self._share

    async def set_share(self, lesson: str, on: bool) -> None:
        if on:
            self._share.add(lesson)
        else:
            self._share.discard(lesson)

    async def put_uplink(self, lesson: str, record: dict[str, Any]) -> None:
        self._uplinks.setdefault(lesson, {})[record["peer_id"]] = copy.deepcopy(record)

    async def get_uplink(self, lesson: str, peer_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._uplinks.get(lesson, {}).get(peer_id))

    async def drop_uplink(self, lesson: str, peer_id: str) -> None:
        self._uplinks.get(lesson, {}).pop(peer_id, None)

    async def uplinks(self, lesson: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(r) for r in self._uplinks.get(lesson, {}).values()]

    async def set_muted(self, lesson: str, sub: str, on: bool) -> None:
        muted = self._muted.setdefault(lesson, set())
        if on:
            muted.add(sub)
        else:
            muted.discard(sub)

    async def is_muted(self, lesson: str, sub: str) -> bool:
        return sub in self._muted.get(lesson, set())

    async def clear_lesson(self, lesson: str) -> None:
        for table in (self._hands, self._stage, self._uplinks, self._muted):
            table.pop(lesson, None)  # type: ignore[attr-defined]
        self._share.discard(lesson)


class RedisStageStore(FeatureRedis, StageStore):
    """Several nodes share one lesson's queue and stage."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._clear_if = self._redis.register_script(_CLEAR_IF)

    @staticmethod
    def _k(lesson: str, part: str) -> str:
        return PREFIX + "{" + lesson + "}:" + part

    async def raise_hand(self, lesson: str, sub: str, peer_id: str, at: float) -> bool:
        key = self._k(lesson, "hands")
        fresh = json.dumps({"peer_id": peer_id, "at": at})
        if await self._call(self._redis.hsetnx(key, sub, fresh)):
            return True
        raw = await self._call(self._redis.hget(key, sub))
        entry = json.loads(raw) if raw else {"at": at}
        if entry.get("peer_id") != peer_id:
            entry["peer_id"] = peer_id
            await self._call(self._redis.hset(key, sub, json.dumps(entry)))
        return False

    async def lower_hand(self, lesson: str, sub: str) -> dict[str, Any] | None:
        key = self._k(lesson, "hands")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, sub)
            pipe.hdel(key, sub)
            raw, removed = await self._call(pipe.execute())
        return {"sub": sub, **json.loads(raw)} if raw and removed else None

    async def hands(self, lesson: str) -> list[dict[str, Any]]:
        raw = await self._call(self._redis.hgetall(self._k(lesson, "hands")))
        return sorted(({"sub": s, **json.loads(v)} for s, v in raw.items()),
                      key=lambda e: e["at"])

    async def get_stage(self, lesson: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.get(self._k(lesson, "stage")))
        return json.loads(raw) if raw else None

    async def set_stage(self, lesson: str, record: dict[str, Any] | None) -> None:
        key = self._k(lesson, "stage")
        if record is None:
            await self._call(self._redis.delete(key))
        else:
            await self._call(self._redis.set(key, json.dumps(record)))

    async def clear_stage_if(self, lesson: str, peer_id: str) -> bool:
        done = await self._call(self._clear_if(keys=[self._k(lesson, "stage")], args=[peer_id]))
        return bool(done)

    async def get_share(self, lesson: str) -> bool:
        return bool(await self._call(self._redis.exists(self._k(lesson, "share"))))

    async def set_share(self, lesson: str, on: bool) -> None:
        key = self._k(lesson, "share")
        await self._call(self._redis.set(key, "1") if on else self._redis.delete(key))

    async def put_uplink(self, lesson: str, record: dict[str, Any]) -> None:
        await self._call(self._redis.hset(self._k(lesson, "uplinks"), record["peer_id"],
                                          json.dumps(record)))

    async def get_uplink(self, lesson: str, peer_id: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.hget(self._k(lesson, "uplinks"), peer_id))
        return json.loads(raw) if raw else None

    async def drop_uplink(self, lesson: str, peer_id: str) -> None:
        await self._call(self._redis.hdel(self._k(lesson, "uplinks"), peer_id))

    async def uplinks(self, lesson: str) -> list[dict[str, Any]]:
        raw = await self._call(self._redis.hvals(self._k(lesson, "uplinks")))
        return [json.loads(v) for v in raw]

    async def set_muted(self, lesson: str, sub: str, on: bool) -> None:
        key = self._k(lesson, "muted")
        await self._call(self._redis.sadd(key, sub) if on else self._redis.srem(key, sub))

    async def is_muted(self, lesson: str, sub: str) -> bool:
        return bool(await self._call(self._redis.sismember(self._k(lesson, "muted"), sub)))

    async def clear_lesson(self, lesson: str) -> None:
        keys = [self._k(lesson, p) for p in ("hands", "stage", "share", "uplinks", "muted")]
        await self._call(self._redis.delete(*keys))


def open_stage_store(redis_url: str | None) -> StageStore:
    return RedisStageStore(redis_url) if redis_url else MemoryStageStore()
