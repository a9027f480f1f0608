"""The rate controller's terms: its inputs (:class:`ReceiverReport`), its output
(:class:`Decision`), its tunables (:class:`ControllerConfig`), its states, directions and
reasons. Pure data, no logic but RTCP field conversion; :mod:`.rate_control` holds the
state machine that uses them (and re-exports every name here).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ladder_spec import DEFAULT_LADDER, Ladder

STEADY = "steady"
PROBING = "probing"

UP = "up"
DOWN = "down"

# reasons
R_LOSS = "loss"
R_ESTIMATE = "estimate"
R_REMB = "remb"
R_RTT = "rtt"
R_CAP = "cap"
R_LINES = "lines"
R_MANUAL = "manual"
R_PROBE_OK = "probe_ok"
R_PROBE_START = "probe_start"
R_PROBE_FAILED = "probe_failed"
R_AUDIO_FLOOR = "audio_floor"


# ---- inputs and outputs ------------------------------------------------------------------
@dataclass(frozen=True)
class ReceiverReport:
    """One RTCP report block about one of the subscriber's streams."""

    fraction_lost: float
    """Lost / expected since the previous report, 0..1 (RTCP's 8-bit value / 256)."""
    packets_lost: int | None = None
    """Cumulative lost (RTCP), for stats."""
    jitter: float | None = None
    """Interarrival jitter in seconds."""
    rtt: float | None = None
    """Round-trip time (s) from LSR/DLSR, when the sender could compute it."""
    kind: str = "video"
    """``video`` or ``audio``: which stream the report block is about."""
    expected: int | None = None
    """Packets expected in the interval (the change of the extended highest sequence
    number since the previous report), when known: reports are then pooled until
    ``min_packets`` so a loss figure over a handful of packets is not taken at face value."""

    @classmethod
    def from_rtcp(cls, fraction_lost: int, packets_lost: int | None = None,
                  jitter: int | None = None, clock_rate: int = 90_000,
                  rtt: float | None = None, kind: str = "video",
                  expected: int | None = None) -> ReceiverReport:
        """From RTCP's raw fields (``fraction_lost`` 0..255, ``jitter`` in clock units)."""
        return cls(fraction_lost=min(max(fraction_lost, 0), 255) / 256.0,
                   packets_lost=packets_lost,
                   jitter=None if jitter is None else jitter / clock_rate,
                   rtt=rtt, kind=kind, expected=expected)


@dataclass(frozen=True)
class Decision:
    tier: str
    """The tier to send now (a keyframe from it on every change)."""
    changed: bool = False
    previous: str | None = None
    reason: str = ""
    direction: str | None = None
    """``up`` / ``down`` when ``changed``."""
    state: str = STEADY
    probe_bitrate: int | None = None
    """While probing: total bit/s to send (pad up to it, e.g. RTX padding); else None."""
    probe_tier: str | None = None


@dataclass
class ControllerConfig:
    """Tunables of :class:`RateController`; seconds and ratios. Defaults suit RTCP receiver
    reports every 0.5-1.5 s (aiortc) or ~1 s (Chromium)."""

    ladder: Ladder = DEFAULT_LADDER
    initial_tier: str | None = None
    """Start here (None: the ladder's best tier, so an unconstrained classroom is on high
    from its first frame)."""
    # going down
    loss_high: float = 0.10
    """Smoothed loss above this is congestion."""
    min_packets: int = 20
    """Reports that say how many packets they cover are pooled up to this many."""
    loss_smoothing: float = 0.5
    """EWMA weight of the newest loss sample (the loss that steps down)."""
    slow_loss_smoothing: float = 0.2
    """EWMA weight for the slow loss average (climbing needs it under loss_up too); it is
    kept across switches: random loss belongs to the path, not to the tier. Samples enter
    it clipped at 2 x loss_high, so a congestion episode is forgotten in ~10 reports."""
    down_after: float = 0.8
    """Congestion must last this long (and span two reports) before stepping down."""
    audio_floor: float = 0.9
    """Audio-only when the link estimate, and the rate that arrives (sent x (1 - slow
    loss)), are under this share of the low tier's rate (low video + audio): a margin, so
    noisy reports on a link that carries low do not pause the video."""
    moderate_after: float = 10.0
    """Slow-average loss above loss_up for this long steps down one tier (a link a little
    too narrow for the tier keeps its queue full: steady loss, no RTT growth),
    never into audio-only: a lower tier has fewer packets a frame, so fewer broken frames."""
    remb_down_ratio: float = 0.9
    """REMB that stopped rising and stays below this share of min(tier rate, send rate)
    for down_after is congestion (a receiver's AIMD estimate drops to 0.85 x its incoming
    rate on overuse; a REMB still rising after a climb is not)."""
    estimate_down_ratio: float = 1.0
    """A loss-based estimate below this share of the tier's rate is congestion."""
    rtt_growth: float = 2.0
    rtt_growth_min: float = 0.10
    """RTT counts as grown when above rtt_growth x base AND base + rtt_growth_min (s)."""
    rtt_reports: int = 3
    """RTT growth without loss steps down after this many reports in a row (loss: 2)."""
    rtt_falling: float = 0.005
    """An RTT this much (s) below the previous one is a queue draining, not growth."""
    rtt_base_window: float = 30.0
    """Base RTT: the lowest seen in this many seconds."""
    settle: float = 0.5
    """After a switch or a probe start, reports this fresh are ignored (they describe the
    old rate)."""
    min_switch_gap: float = 1.0
    """Automatic switches at least this far apart (cap and manual act at once)."""
    # going up
    loss_up: float = 0.05
    """Climb only while the slow loss average is under this (the climb limit)."""
    hold: float = 3.0
    """Seconds of a clean link before the first probe, and after a passed one."""
    hold_max: float = 10.0
    """Backoff ceiling: each failed climb doubles the hold up to this. With
    probe_with_media, use ~60 s: each failed media probe is two visible switches."""
    climb_grace: float = 30.0
    """A step down this soon after a committed climb is a failed climb: it was visible (two
    switches), so ``climb_hold`` (a floor under the hold) doubles, from 4 x hold up to
    climb_hold_max; a climb that lasts climb_grace halves it again."""
    climb_hold_max: float = 120.0
    step_hold: float = 1.0
    """After a passed probe (the link carried the new tier's rate, padding included) the
    next probe may start this soon, after step_reports clean reports on the new tier: a
    link that came back climbs tier after tier instead of waiting a full hold each time."""
    step_reports: int = 1
    reset_packets: int = 150
    """The probe backoff resets when the path's random loss has gone: the latest reports
    since the last failed probe, over this many packets, lost under a fifth of the slow
    loss at that failure (which was >= 1 %; at 3 % that is none of 150, a 1 % chance on a
    path that still loses 3 %). A lossy path that turned clean has changed (a lifted limit,
    a fixed Wi-Fi): failures on the old path say nothing about the new one."""
    probe_duration: float = 2.0
    probe_reports: int = 2
    """A probe passes after probe_duration and this many clean reports."""
    probe_timeout: float = 6.0
    """No pass by then: the probe fails (no evidence, or a mean loss that stayed above
    the limit, is not a pass)."""
    probe_loss_margin: float = 0.04
    """A probe passes when its mean loss is under the pre-probe loss plus this (random loss
    that does not grow with the rate is not congestion) and under loss_up; one report above
    loss_high fails it at once."""
    probe_rtt_rise: float = 0.04
    """... or the RTT rises this much (s) over its value before the probe, or half of it
    over reports that each rose: the bottleneck queue is filling, even if nothing is lost
    yet (a link just below the next tier)."""
    probe_remb_drop: float = 0.9
    """... or REMB falls under this share of its value when the probe started, while the
    reports agree (the probe's loss above its pre-probe level, or its RTT rising): REMB is
    an optional, lagging input; receiver reports are the ground truth."""
    probe_fail_settle: float = 1.0
    """After a failed probe, reports this fresh are ignored: an RTCP interval (0.5-1.5 s)
    that covered the probe's padding describes the probe, not the tier without it (a
    padded probe on a link just too narrow would otherwise step the tier down)."""
    probe_with_media: bool = False
    """True: probe by sending the next tier itself (Decision.tier is the probe tier while
    probing; a failed probe switches back). False: keep the tier, pad to probe_bitrate."""
    report_max_age: float = 3.0
    """No climbing without a report this fresh ..."""
    climb_reports: int = 2
    """... nor with fewer reports than this during the hold."""
    remb_max_age: float = 5.0
    remb_fall: float = 0.97
    """A REMB under this share of the previous one has fallen (a receiver's overuse
    decrease). A REMB below what is sent counts against the tier, and blocks probes, only
    while it has not risen since such a fall: after a climb a receiver's estimate lags,
    rising ~8 %/s (aiortc, Chromium's AIMD), and that is no congestion."""
    remb_join_grace: float = 5.0
    """REMB in the first seconds after join is ignored: a receiver's estimate starts low
    (Chromium and aiortc start from what they have received so far, a few hundred kbit/s)
    and ramps up, so early values would push a classroom that can take high down."""
    manual_tier: str = "low"
    """Best tier while the classroom's low-bandwidth button is on."""
