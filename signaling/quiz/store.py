"""Quiz persistence behind one interface: in-process memory, SQLite (the embedded
default, store_sqlite.py) or Redis.

What is kept per lesson: the question set, the rounds (a practice question or a test:
``{round_id, mode, questions, opened_at, closes_at, closed_at, revealed_at, ...}``), the
current round, and every answer. An answer is stored once per ``answer_id`` and once per
(round, question, responder), atomically, *before* it is acknowledged; a resend finds the
stored record and is acknowledged again with the same result.

Redis keys (``{lesson}`` is a Redis Cluster hash tag, so a lesson's keys share a slot):

  classroom:quiz:{L}:set              JSON question set
  classroom:quiz:{L}:rounds           LIST of round ids, oldest first
  classroom:quiz:{L}:current          the current round id
  classroom:quiz:{L}:round:{rid}      JSON round
  classroom:quiz:{L}:closed:{rid}     close time; SET NX makes "close" happen once
  classroom:quiz:{L}:ids              HASH answer_id -> round id
  classroom:quiz:{L}:slots:{rid}      HASH "question|responder" -> answer_id
  classroom:quiz:{L}:answers:{rid}    HASH answer_id -> JSON answer record
  classroom:quiz:{L}:resp:{responder} HASH "round|question" -> JSON answer record
  classroom:quiz:{L}:rooms            HASH classroom sub -> JSON {name, school, peer_id}
  classroom:quiz:{L}:ver:{rid}        counter bumped by every stored answer (live tallies)
  classroom:quiz:timed                ZSET "lesson round" by closes_at, rounds to close
"""

from __future__ import annotations

import abc
import copy
import json
from pathlib import Path
from typing import Any

from signaling.store.redis import FeatureRedis

PREFIX = "classroom:quiz:"

STORED, DUPLICATE, TAKEN = "stored", "duplicate", "taken"


def slot_of(record: dict[str, Any]) -> str:
    return f"{record['question_id']}|{record['responder']}"


class QuizStore(abc.ABC):
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (Redis); nothing for memory."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # question set
    @abc.abstractmethod
    async def get_set(self, lesson: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def save_set(self, lesson: str, qset: dict[str, Any]) -> None: ...

    # rounds
    @abc.abstractmethod
    async def add_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        """Store a new round and make it the lesson's current one."""

    @abc.abstractmethod
    async def get_round(self, lesson: str, round_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def current_round(self, lesson: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def rounds(self, lesson: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def update_round(self, lesson: str, rnd: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def close_round(self, lesson: str, round_id: str, at: float
                          ) -> dict[str, Any] | None:
        """Close a round once: the closed round to the caller that closed it, else None."""

    @abc.abstractmethod
    async def timed_rounds(self) -> list[tuple[str, str, float]]:
        """(lesson, round, closes_at) of timed rounds not yet closed (timers after restart)."""

    # answers
    @abc.abstractmethod
    async def put_answer(self, lesson: str, record: dict[str, Any]
                         ) -> tuple[str, dict[str, Any] | None]:
        """Store ``record`` unless its answer_id or its slot is taken.

        Returns (STORED, None), (DUPLICATE, the record stored under this answer_id) or
        (TAKEN, the record another answer_id stored for this question and responder)."""

    @abc.abstractmethod
    async def get_answer(self, lesson: str, answer_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def answers(self, lesson: str, round_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def answers_of(self, lesson: str, responder: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def version(self, lesson: str, round_id: str) -> int: ...

    # classrooms that joined the lesson (for "who has not answered")
    @abc.abstractmethod
    async def add_room(self, lesson: str, sub: str, info: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def rooms(self, lesson: str) -> dict[str, dict[str, Any]]: ...


class MemoryQuizStore(QuizStore):
    def __init__(self) -> None:
        self._sets: dict[str, dict[str, Any]] = {}
        self._rounds: dict[str, dict[str, dict[str, Any]]] = {}
        self._order: dict[str, list[str]] = {}
        self._current: dict[str, str] = {}
        self._ids: dict[str, dict[str, str]] = {}
        self._slots: dict[tuple[str, str], dict[str, str]] = {}
        self._answers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._by_responder: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._rooms: dict[str, dict[str, dict[str, Any]]] = {}

    async def add_room(self, lesson: str, sub: str, info: dict[str, Any]) -> None:
        self._rooms.setdefault(lesson, {})[sub] = dict(info)

    async def rooms(self, lesson: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._rooms.get(lesson, {}))

    async def get_set(self, lesson: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._sets.get(lesson))

    async def save_set(self, lesson: str, qset: dict[str, Any]) -> None:
        self._sets[lesson] = copy.deepcopy(qset)

    async def add_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        self._rounds.setdefault(lesson, {})[rnd["round_id"]] = copy.deepcopy(rnd)
        self._order.setdefault(lesson, []).append(rnd["round_id"])
        self._current[lesson] = rnd["round_id"]

    async def get_round(self, lesson: str, round_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._rounds.get(lesson, {}).get(round_id))

    async def current_round(self, lesson: str) -> dict[str, Any] | None:
        rid = self._current.get(lesson)
        return await self.get_round(lesson, rid) if rid else None

    async def rounds(self, lesson: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(self._rounds[lesson][r]) for r in self._order.get(lesson, [])]

    async def update_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        self._rounds.setdefault(lesson, {})[rnd["round_id"]] = copy.deepcopy(rnd)

    async def close_round(self, lesson: str, round_id: str, at: float
                          ) -> dict[str, Any] | None:
        rnd = self._rounds.get(lesson, {}).get(round_id)
        if rnd is None or rnd.get("closed_at") is not None:
            return None
        rnd["closed_at"] = at
        return copy.deepcopy(rnd)

    async def timed_rounds(self) -> list[tuple[str, str, float]]:
        return [(lesson, rid, r["closes_at"]) for lesson, rounds in self._rounds.items()
                for rid, r in rounds.items()
                if r.get("closes_at") is not None and r.get("closed_at") is None]

    async def put_answer(self, lesson: str, record: dict[str, Any]
                         ) -> tuple[str, dict[str, Any] | None]:
        # No await between the checks and the writes: atomic on the event loop.
        ids = self._ids.setdefault(lesson, {})
        aid, rid = record["answer_id"], record["round_id"]
        if aid in ids:
            return DUPLICATE, copy.deepcopy(self._answers[(lesson, ids[aid])][aid])
        slots = self._slots.setdefault((lesson, rid), {})
        slot = slot_of(record)
        if slot in slots:
            return TAKEN, copy.deepcopy(self._answers[(lesson, rid)][slots[slot]])
        stored = copy.deepcopy(record)
        ids[aid] = rid
        slots[slot] = aid
        self._answers.setdefault((lesson, rid), {})[aid] = stored
        self._by_responder.setdefault((lesson, record["responder"]), {})[
            f"{rid}|{record['question_id']}"] = stored
        self._versions[(lesson, rid)] = self._versions.get((lesson, rid), 0) + 1
        return STORED, None

    async def get_answer(self, lesson: str, answer_id: str) -> dict[str, Any] | None:
        rid = self._ids.get(lesson, {}).get(answer_id)
        if rid is None:
            return None
        return copy.deepcopy(self._answers[(lesson, rid)][answer_id])

    async def answers(self, lesson: str, round_id: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(a) for a in self._answers.get((lesson, round_id), {}).values()]

    async def answers_of(self, lesson: str, responder: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(a)
                for a in self._by_responder.get((lesson, responder), {}).values()]

    async def version(self, lesson: str, round_id: str) -> int:
        return self._versions.get((lesson, round_id), 0)


_PUT_ANSWER = """
local rid = redis.call('HGET', KEYS[1], ARGV[1])
if rid then
  return {'duplicate', redis.call('HGET', ARGV[6] .. rid, ARGV[1])}
end
local taken = redis.call('HGET', KEYS[2], ARGV[2])
if taken then
  return {'taken', redis.call('HGET', KEYS[3], taken)}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[5], ARGV[3])
redis.call('INCR', KEYS[5])
return {'stored', ''}
"""


class RedisQuizStore(FeatureRedis, QuizStore):
    def __init__(self, url: str) -> None:
        super().__init__(url)  # a pool big enough for a burst of answers
        self._put = self._redis.register_script(_PUT_ANSWER)

    @staticmethod
    def _k(lesson: str, *parts: str) -> str:
        return PREFIX + "{" + lesson + "}:" + ":".join(parts)

    async def get_set(self, lesson: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.get(self._k(lesson, "set")))
        return json.loads(raw) if raw else None

    async def save_set(self, lesson: str, qset: dict[str, Any]) -> None:
        await self._call(self._redis.set(self._k(lesson, "set"), json.dumps(qset)))

    async def add_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        rid = rnd["round_id"]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._k(lesson, "round", rid), json.dumps(rnd))
            pipe.rpush(self._k(lesson, "rounds"), rid)
            pipe.set(self._k(lesson, "current"), rid)
            if rnd.get("closes_at") is not None:
                pipe.zadd(PREFIX + "timed", {f"{lesson} {rid}": rnd["closes_at"]})
            await self._call(pipe.execute())

    def _merge(self, raw: str | None, closed: str | None) -> dict[str, Any] | None:
        if not raw:
            return None
        rnd = json.loads(raw)
        if closed is not None and rnd.get("closed_at") is None:
            rnd["closed_at"] = float(closed)
        return rnd

    async def get_round(self, lesson: str, round_id: str) -> dict[str, Any] | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._k(lesson, "round", round_id))
            pipe.get(self._k(lesson, "closed", round_id))
            raw, closed = await self._call(pipe.execute())
        return self._merge(raw, closed)

    async def current_round(self, lesson: str) -> dict[str, Any] | None:
        rid = await self._call(self._redis.get(self._k(lesson, "current")))
        return await self.get_round(lesson, rid) if rid else None

    async def rounds(self, lesson: str) -> list[dict[str, Any]]:
        rids = await self._call(self._redis.lrange(self._k(lesson, "rounds"), 0, -1))
        out = []
        for rid in rids:
            rnd = await self.get_round(lesson, rid)
            if rnd is not None:
                out.append(rnd)
        return out

    async def update_round(self, lesson: str, rnd: dict[str, Any]) -> None:
        await self._call(self._redis.set(self._k(lesson, "round", rnd["round_id"]),
                                         json.dumps(rnd)))

    async def close_round(self, lesson: str, round_id: str, at: float
                          ) -> dict[str, Any] | None:
        won = await self._call(self._redis.set(self._k(lesson, "closed", round_id), repr(at),
                                               nx=True))
        if not won:
            return None
        rnd = await self.get_round(lesson, round_id)
        if rnd is None:
            return None
        rnd["closed_at"] = at
        await self.update_round(lesson, rnd)
        await self._call(self._redis.zrem(PREFIX + "timed", f"{lesson} {round_id}"))
        return rnd

    async def timed_rounds(self) -> list[tuple[str, str, float]]:
        items = await self._call(self._redis.zrange(PREFIX + "timed", 0, -1, withscores=True))
        out = []
        for member, score in items:
            lesson, _, rid = member.rpartition(" ")
            out.append((lesson, rid, float(score)))
        return out

    async def put_answer(self, lesson: str, record: dict[str, Any]
                         ) -> tuple[str, dict[str, Any] | None]:
        rid, aid = record["round_id"], record["answer_id"]
        keys = [self._k(lesson, "ids"), self._k(lesson, "slots", rid),
                self._k(lesson, "answers", rid), self._k(lesson, "resp", record["responder"]),
                self._k(lesson, "ver", rid)]
        args = [aid, slot_of(record), json.dumps(record), rid,
                f"{rid}|{record['question_id']}", self._k(lesson, "answers", "")]
        status, raw = await self._call(self._put(keys=keys, args=args))
        if status == STORED:
            return STORED, None
        return status, (json.loads(raw) if raw else None)

    async def get_answer(self, lesson: str, answer_id: str) -> dict[str, Any] | None:
        rid = await self._call(self._redis.hget(self._k(lesson, "ids"), answer_id))
        if rid is None:
            return None
        raw = await self._call(self._redis.hget(self._k(lesson, "answers", rid), answer_id))
        return json.loads(raw) if raw else None

    async def answers(self, lesson: str, round_id: str) -> list[dict[str, Any]]:
        raw = await self._call(self._redis.hvals(self._k(lesson, "answers", round_id)))
        return [json.loads(r) for r in raw]

    async def answers_of(self, lesson: str, responder: str) -> list[dict[str, Any]]:
        raw = await self._call(self._redis.hvals(self._k(lesson, "resp", responder)))
        return [json.loads(r) for r in raw]

    async def add_room(self, lesson: str, sub: str, info: dict[str, Any]) -> None:
        await self._call(self._redis.hset(self._k(lesson, "rooms"), sub, json.dumps(info)))

    async def rooms(self, lesson: str) -> dict[str, dict[str, Any]]:
        raw = await self._call(self._redis.hgetall(self._k(lesson, "rooms")))
        return {sub: json.loads(v) for sub, v in raw.items()}

    async def version(self, lesson: str, round_id: str) -> int:
        raw = await self._call(self._redis.get(self._k(lesson, "ver", round_id)))
        return int(raw or 0)


def open_quiz_store(redis_url: str | None, library: Path | None = None) -> QuizStore:
    """Redis when a URL is given, else ``<library>/classroom.db`` (kept across a
    restart: store_sqlite.py), else memory."""
    if redis_url:
        return RedisQuizStore(redis_url)
    if library is not None:
        from signaling.store.sqlite_file import DB_NAME

        from .store_sqlite import SqliteQuizStore

        return SqliteQuizStore(library / DB_NAME)
    return MemoryQuizStore()
