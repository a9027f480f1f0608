"""A link estimate from receiver reports and bytes sent, for browsers that send no REMB.

GCC's loss-based controller (draft-ietf-rmcat-gcc, section 6): under 2 % loss the estimate
grows 8 % a second, over 10 % it shrinks by (1 - loss / 2), in between it holds. Pure
arithmetic: no aiortc import, no clock (``now`` is passed in).
"""

from __future__ import annotations

__all__ = ["BandwidthEstimator", "RateMeter", "bandwidth_estimate"]


def bandwidth_estimate(
    estimate: float | None,
    fraction_lost: float,
    sent_bitrate: float | None,
    *,
    elapsed: float = 1.0,
    loss_low: float = 0.02,
    loss_high: float = 0.10,
    increase: float = 1.08,
    min_bitrate: float = 10_000,
    max_bitrate: float = 10_000_000,
) -> float | None:
    """One step of GCC's loss-based controller.

    loss < ``loss_low``: grow by ``increase`` per second of ``elapsed`` (8 %/s);
    loss > ``loss_high``: ``min(estimate, sent) * (1 - 0.5 * loss)`` (the sent rate bounds
    it: an estimate above what was sent was never tested), but not below what arrived,
    ``sent * (1 - loss)`` (a probe that overloads a bottleneck 3x still measures it);
    in between: unchanged.
    ``estimate`` None starts from ``sent_bitrate`` (None if that is unknown too).
    """
    if estimate is None:
        if sent_bitrate is None:
            return None
        estimate = float(sent_bitrate)
    loss = min(max(fraction_lost, 0.0), 1.0)
    if loss < loss_low:
        estimate *= increase ** min(max(elapsed, 0.0), 2.0)
    elif loss > loss_high:
        base = min(estimate, sent_bitrate) if sent_bitrate else estimate
        delivered = sent_bitrate * (1.0 - loss) if sent_bitrate else 0.0
        estimate = max(base * (1.0 - 0.5 * loss), min(delivered, base))
    return float(min(max(estimate, min_bitrate), max_bitrate))


class RateMeter:
    """Bit/s from a cumulative byte counter, over windows of at least ``window`` seconds."""

    def __init__(self, window: float = 0.5, smoothing: float = 0.5) -> None:
        self.window = window
        self.smoothing = smoothing
        self.bitrate: float | None = None
        self._mark: tuple[float, int] | None = None

    def update(self, now: float, total_bytes: int) -> float | None:
        if self._mark is None or total_bytes < self._mark[1]:  # first call, or counter reset
            self._mark = (now, total_bytes)
            return self.bitrate
        then, before = self._mark
        if now - then < self.window:
            return self.bitrate
        rate = 8.0 * (total_bytes - before) / (now - then)
        self.bitrate = rate if self.bitrate is None else (
            self.smoothing * rate + (1.0 - self.smoothing) * self.bitrate)
        self._mark = (now, total_bytes)
        return self.bitrate


class BandwidthEstimator:
    """Receiver reports + bytes sent -> a link estimate, for browsers that send no REMB."""

    def __init__(self, initial: float | None = None, *, loss_low: float = 0.02,
                 loss_high: float = 0.10, max_bitrate: float = 10_000_000,
                 min_bitrate: float = 10_000) -> None:
        self.estimate: float | None = initial
        self.loss_low = loss_low
        self.loss_high = loss_high
        self.max_bitrate = max_bitrate
        self.min_bitrate = min_bitrate
        self.meter = RateMeter()
        self._last_report: float | None = None

    @property
    def sent_bitrate(self) -> float | None:
        return self.meter.bitrate

    def on_bytes_sent(self, now: float, total_bytes: int) -> None:
        self.meter.update(now, total_bytes)

    def on_report(self, now: float, fraction_lost: float) -> float | None:
        elapsed = 1.0 if self._last_report is None else now - self._last_report
        self._last_report = now
        self.estimate = bandwidth_estimate(
            self.estimate, fraction_lost, self.meter.bitrate, elapsed=elapsed,
            loss_low=self.loss_low, loss_high=self.loss_high,
            min_bitrate=self.min_bitrate, max_bitrate=self.max_bitrate)
        return self.estimate

    def raise_to(self, bitrate: float) -> None:
        """A probe at ``bitrate`` passed: the link carries at least that."""
        if self.estimate is None or self.estimate < bitrate:
            self.estimate = float(min(bitrate, self.max_bitrate))
