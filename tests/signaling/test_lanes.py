"""Per-socket lanes (signaling/lanes.py): order kept while jobs are quick, a stuck one
overtaken after the grace, no idle tasks, close waits for a running job."""

from __future__ import annotations

import asyncio
import time

from signaling.lanes import Lanes, lane_of
from tests.helpers import eventually


def test_lanes_by_message_type():
    assert lane_of("ping") == lane_of("refresh") == "control"
    assert lane_of("offer") == lane_of("ice") == lane_of("low-bandwidth") == "media"
    assert lane_of("start-lesson") == lane_of("quiz-answer") == lane_of("raise-hand") == "store"


async def test_quick_jobs_keep_arrival_order_across_lanes():
    lanes, seen = Lanes(), []

    def job(name: str, delay: float):
        async def run() -> None:
            await asyncio.sleep(delay)
            seen.append(name)
        return run

    lanes.submit("store", job("s1", 0.05))
    lanes.submit("control", job("ping", 0))
    lanes.submit("media", job("ice", 0))
    lanes.submit("store", job("s2", 0))
    await eventually(lambda: len(seen) == 4, timeout=5)
    assert seen == ["s1", "ping", "ice", "s2"]


async def test_a_stuck_job_is_overtaken_by_other_lanes_only():
    lanes, seen = Lanes(overtake=0.1), []
    release = asyncio.Event()

    async def stuck() -> None:
        await release.wait()
        seen.append("stuck")

    def quick(name: str):
        async def run() -> None:
            seen.append(name)
        return run

    t0 = time.monotonic()
    lanes.submit("store", stuck)
    lanes.submit("control", quick("ping"))
    lanes.submit("store", quick("after-stuck"))
    await eventually(lambda: "ping" in seen, timeout=2)
    assert 0.08 <= time.monotonic() - t0 < 1.0
    assert seen == ["ping"], "the store lane keeps its own order"
    release.set()
    await eventually(lambda: len(seen) == 3, timeout=2)
    assert seen == ["ping", "stuck", "after-stuck"]
    await eventually(lambda: all(w.done() for w in lanes._workers.values()), timeout=2)


async def test_close_lets_the_running_job_finish_and_drops_the_rest():
    lanes, seen = Lanes(), []

    async def slow() -> None:
        await asyncio.sleep(0.1)
        seen.append("slow")

    async def never() -> None:
        seen.append("never")

    lanes.submit("media", slow)
    lanes.submit("media", never)
    await asyncio.sleep(0)
    await lanes.close()
    assert seen == ["slow"]
    assert not lanes.submit("media", never)


async def test_a_full_lane_refuses():
    lanes = Lanes(limit=2)
    gate = asyncio.Event()
    assert lanes.submit("store", gate.wait)
    assert lanes.submit("store", gate.wait)
    assert not lanes.submit("store", gate.wait)
    assert lanes.submit("control", gate.wait), "other lanes are not full"
    gate.set()
    await lanes.close()
