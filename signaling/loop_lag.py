"""How late the event loop runs: the first thing to look at when media stalls.

Everything on a node (signaling, the relay's fan-out, ICE consent answers) shares one
event loop; a loop that wakes late delays every packet and, past ~0.5 s, fails the
peers' STUN consent checks. The watcher asks to wake every ``interval`` and records how
much later it woke in ``classroom_event_loop_lag_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Histogram

LOOP_LAG = Histogram(
    "classroom_event_loop_lag_seconds",
    "How much later than asked the node's event loop woke a 100 ms timer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STALL_LOG_SECONDS = 0.5
"""A wake-up this late is logged (at most once every 10 s): STUN consent starts failing."""

logger = logging.getLogger(__name__)


async def watch_loop_lag(interval: float = 0.1,
                         observe: Callable[[float], None] = LOOP_LAG.observe) -> None:
    """Run until cancelled, passing every wake-up's lateness (seconds) to ``observe``."""
    loop = asyncio.get_running_loop()
    last_log = 0.0
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - asked - interval)
        observe(lag)
        if lag >= STALL_LOG_SECONDS and time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            logger.warning("event loop stalled", extra={"lag_ms": round(1000 * lag)})
