"""Whether this node's event loop has been running late.

Fed with every wake-up lateness the node's loop-lag watcher sees
(``Relay.note_loop_lag``); read by each subscriber's rate controller, which must not take
RTT growth measured while the node itself is slow for a congested link
(``RateController.node_busy``).
"""

from __future__ import annotations

import time


class NodeLoad:
    """Busy from a wake-up at least ``threshold`` seconds late until ``hold`` seconds after
    the last such one (a report's RTT covers the second or so before it arrives)."""

    def __init__(self, threshold: float = 0.05, hold: float = 3.0) -> None:
        self.threshold = threshold
        self.hold = hold
        self.busy_until = 0.0
        self.late_wakeups = 0

    def note_lag(self, lag: float, now: float | None = None) -> None:
        if lag >= self.threshold:
            self.late_wakeups += 1
            self.busy_until = (time.monotonic() if now is None else now) + self.hold

    def busy(self, now: float) -> bool:
        return now < self.busy_until
