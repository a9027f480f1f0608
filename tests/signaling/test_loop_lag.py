"""The event-loop lag watcher: a blocked loop shows in the histogram and the log."""

from __future__ import annotations

import asyncio
import logging
import time

from signaling.loop_lag import watch_loop_lag


async def test_a_blocked_loop_is_observed(caplog) -> None:
    lags: list[float] = []
    task = asyncio.ensure_future(watch_loop_lag(0.01, observe=lags.append))
    try:
        deadline = time.monotonic() + 5
        while len(lags) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="signaling.loop_lag"):
            time.sleep(0.6)  # block the loop on purpose
            seen = len(lags)
            while len(lags) == seen and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        assert max(lags) >= 0.5
        assert any(r.getMessage() == "event loop stalled" and r.lag_ms >= 500
                   for r in caplog.records)
    finally:
        task.cancel()


async def test_the_server_exports_the_lag_metric() -> None:
    import aiohttp

    from tests.helpers import start_server

    server = await start_server()
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 5
            while True:
                async with http.get(server.base_url + "/metrics") as resp:
                    text = await resp.text()
                count = [line for line in text.splitlines()
                         if line.startswith("classroom_event_loop_lag_seconds_count")]
                if count and float(count[0].split()[-1]) > 0:
                    break
                assert time.monotonic() < deadline, "no loop-lag observation in 5 s"
                await asyncio.sleep(0.1)
    finally:
        await server.close()
