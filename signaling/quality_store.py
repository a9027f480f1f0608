"""Per-lesson, per-classroom quality summaries behind one interface: memory or Redis.

A summary is a set of running sums for one identity (the token's ``sub``) in one lesson:
``seconds`` connected (covered by accepted reports), ``reports``, ``freezes``,
``freeze_seconds``, ``frames_decoded``, ``audio_samples``, ``audio_concealed_samples``,
``tier:<tier>`` seconds, plus who it is (``role``, ``name``, ``school``) and the last mark.
Nodes add to the sums (Redis ``HINCRBYFLOAT``), so several nodes and reconnects add up.

Redis keys (``{L}`` is a Redis Cluster hash tag):
  classroom:quality:{L}:subs        SET of subs with a summary
  classroom:quality:{L}:sum:{sub}   HASH field -> number, and the info fields
Summaries outlive the lesson (usage statistics read them later); ``SUMMARY_TTL`` bounds them.
"""

from __future__ import annotations

import abc
from typing import Any

from signaling.store.redis import FeatureRedis

PREFIX = "classroom:quality:"
SUMMARY_TTL = 90 * 24 * 3600
"""Seconds a lesson's summaries are kept in Redis after their last update."""
INFO_FIELDS = ("role", "name", "school", "mark", "reason")


class QualityStore(abc.ABC):
    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def add(self, lesson: str, sub: str, sums: dict[str, float],
                  info: dict[str, str]) -> None:
        """Add ``sums`` to the summary of ``sub`` in ``lesson``; set its ``info`` fields."""

    @abc.abstractmethod
    async def summaries(self, lesson: str) -> dict[str, dict[str, Any]]:
        """``{sub: summary}`` of a lesson (numbers as floats, info fields as strings)."""


class MemoryQualityStore(QualityStore):
    def __init__(self) -> None:
        self._sums: dict[str, dict[str, dict[str, Any]]] = {}

    async def add(self, lesson: str, sub: str, sums: dict[str, float],
                  info: dict[str, str]) -> None:
        record = self._sums.setdefault(lesson, {}).setdefault(sub, {})
        for name, value in sums.items():
            record[name] = float(record.get(name, 0.0)) + value
        record.update(info)

    async def summaries(self, lesson: str) -> dict[str, dict[str, Any]]:
        return {sub: dict(rec) for sub, rec in self._sums.get(lesson, {}).items()}


class RedisQualityStore(FeatureRedis, QualityStore):
    @staticmethod
    def _k(lesson: str, *parts: str) -> str:
        return PREFIX + "{" + lesson + "}:" + ":".join(parts)

    async def add(self, lesson: str, sub: str, sums: dict[str, float],
                  info: dict[str, str]) -> None:
        key, subs = self._k(lesson, "sum", sub), self._k(lesson, "subs")
        pipe = self._redis.pipeline(transaction=False)
        for name, value in sums.items():
            if value:
                pipe.hincrbyfloat(key, name, value)
        if info:
            pipe.hset(key, mapping=info)
        pipe.expire(key, SUMMARY_TTL)
        pipe.sadd(subs, sub)
        pipe.expire(subs, SUMMARY_TTL)
        await self._call(pipe.execute())

    async def summaries(self, lesson: str) -> dict[str, dict[str, Any]]:
        subs = sorted(await self._call(self._redis.smembers(self._k(lesson, "subs"))))
        if not subs:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for sub in subs:
            pipe.hgetall(self._k(lesson, "sum", sub))
        out: dict[str, dict[str, Any]] = {}
        for sub, raw in zip(subs, await self._call(pipe.execute()), strict=True):
            if raw:
                out[sub] = {k: (v if k in INFO_FIELDS else float(v)) for k, v in raw.items()}
        return out


def open_quality_store(redis_url: str | None) -> QualityStore:
    if redis_url:
        return RedisQualityStore(redis_url)
    return MemoryQualityStore()
