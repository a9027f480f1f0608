"""Per-socket message lanes: a message stuck on the store never holds up the others.

A socket's messages used to run one after another in its read loop, so one store call
on a frozen Redis held up every later message (a ping, an ICE candidate) for as long as
it waited. After ``hello``, :class:`Session` puts each message in a lane by what it
waits on:

* ``control`` (``ping``, ``refresh``): nothing;
* ``media`` (``offer``, ``ice``, ``low-bandwidth``, ``grid-view``): the relay; an offer
  checks the lesson's state as this node knows it (``LessonHub.known_lesson``), not the
  store;
* ``store`` (everything else: lesson state, hands, stage, quiz): the store.

Each lane runs its messages one at a time in arrival order. A message also waits for
the messages that arrived before it in the other lanes, but for at most ``overtake``
(0.25 s): while the store answers, a socket's messages keep their order exactly as
before (a ping after a message is answered after it: clients and tests use it as a
barrier); while the store is stuck, the messages that do not need it go past. A lane
holds at most ``limit`` waiting messages (the rate limit lets 40 in at once); past
that a message is refused with ``store_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

CONTROL = frozenset({"ping", "refresh"})
MEDIA = frozenset({"offer", "ice", "low-bandwidth", "grid-view"})
OVERTAKE = 0.25
"""Seconds a message waits for earlier ones of other lanes before it goes past them."""

Job = Callable[[], Awaitable[object]]
_Item = tuple[Job, list["asyncio.Future[None]"], "asyncio.Future[None]"]


def lane_of(msg_type: str) -> str:
    """The lane a message type runs in."""
    if msg_type in CONTROL:
        return "control"
    return "media" if msg_type in MEDIA else "store"


class Lanes:
    """Ordered queues of jobs for one socket; a lane's task exists only while it has work
    (a thousand idle phones hold no tasks)."""

    def __init__(self, limit: int = 64, overtake: float = OVERTAKE) -> None:
        self.limit = limit
        self.overtake = overtake
        self._queues: dict[str, deque[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._unfinished: list[tuple[str, asyncio.Future[None]]] = []  # arrival order
        self._closed = False

    def submit(self, lane: str, job: Job) -> bool:
        """Queue ``job`` behind the lane's earlier ones; False when the lane is full."""
        if self._closed:
            return False
        queue = self._queues.setdefault(lane, deque())
        if len(queue) >= self.limit:
            return False
        loop = asyncio.get_running_loop()
        self._unfinished = [(n, f) for n, f in self._unfinished if not f.done()]
        before = [f for n, f in self._unfinished if n != lane]
        done: asyncio.Future[None] = loop.create_future()
        self._unfinished.append((lane, done))
        queue.append((job, before, done))
        worker = self._workers.get(lane)
        if worker is None or worker.done():
            # A worker returns as soon as it finds its queue empty, with no await in
            # between, so a job is never left behind a finished worker.
            self._workers[lane] = loop.create_task(self._work(queue), name=f"lane-{lane}")
        return True

    async def _work(self, queue: deque[_Item]) -> None:
        while queue and not self._closed:
            job, before, done = queue.popleft()
            try:
                if before:
                    await asyncio.wait(before, timeout=self.overtake)
                await job()
            except Exception:  # the job maps its own errors; this one is a bug
                logger.exception("lane job failed")
            finally:
                if not done.done():
                    done.set_result(None)

    async def close(self, grace: float = 5.0) -> None:
        """Drop the waiting jobs and let the running ones finish, for up to ``grace``
        seconds, before the socket's cleanup (as when the read loop ran them: an offer
        half-way must not outlive its session); then cancel what is left."""
        self._closed = True
        for queue in self._queues.values():
            for _, _, done in queue:
                if not done.done():
                    done.set_result(None)
            queue.clear()
        current = asyncio.current_task()
        workers = [w for w in self._workers.values() if w is not current and not w.done()]
        if not workers:
            return
        _, late = await asyncio.wait(workers, timeout=grace)
        for worker in late:
            worker.cancel()
        for worker in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
