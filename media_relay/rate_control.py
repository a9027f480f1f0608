"""Per-subscriber rate control: which tier of the ladder a classroom's link can carry.

Pure decision logic: no aiortc, aiohttp or clock import. The caller passes ``now``
(seconds, any monotonic origin) with every input, so traces replay exactly in tests.

Why this module is ~700 lines (over the ~600 a module should stay under): it is one state
machine, :class:`RateController`, and this docstring is its specification. Every
transition (step down, probe start, pass, fail, backoff reset) reads and writes the same
state (smoothed and slow loss, RTT base, REMB fall, holds, the probe), so splitting the
class would pass that state between modules and hide the order of the checks the traces
replay. Its inputs, output and tunables live in :mod:`.rate_config` (re-exported here);
the loss-based estimate in :mod:`.bandwidth_estimate`.

Inputs (one :class:`RateController` per subscriber):

* :meth:`RateController.on_receiver_report` -- an RTCP receiver report block for one of the
  subscriber's streams (fraction lost, cumulative lost, jitter) and the RTT computed from it.
* :meth:`RateController.on_remb` -- a REMB estimate, when the browser sends one (ignored for
  ``remb_join_grace`` after join: a receiver's first estimates are low while it ramps up).
* :meth:`RateController.on_bytes_sent` -- cumulative bytes written to the subscriber (all
  streams); gives the send rate the loss-based estimate (:class:`BandwidthEstimator`) and
  REMB are compared with.
* :meth:`RateController.set_cap` (school cap / its classrooms) and
  :meth:`RateController.set_low_bandwidth` (the classroom's ``low-bandwidth`` button).
* :meth:`RateController.tick` -- time passes (call it every ~0.5 s): probes start and end.

Every input returns a :class:`Decision`: the tier to send, whether it changed and why, and
while probing the total bit/s to try (``probe_bitrate``).

State machine (per subscriber)::

                 congestion sustained >= down_after over 2 reports (smoothed loss >
                 loss_high, REMB fallen below what is sent, RTT grown and not falling)
                 -> the best tier the estimate fits, at least one step down;
                 steady loss > loss_up for moderate_after -> one step down (never audio)
        +------------------------------------------------------------------+
        v                                                                  |
    STEADY(tier) --no congestion for max(hold, climb_hold), slow loss under the climb
        ^   ^      limit, fresh reports, below the cap--> PROBING(tier, next) +
        |   |                                                 |
        |   +--- fail: a report > loss_high, RTT rising, -----+  tier unchanged;
        |        REMB fell and reports agree, mean loss       |  hold x2 (<= hold_max),
        |        not under the limit                          |  reset when the path's
        |                                                     |  random loss has gone
        +--- pass: mean loss under the limit after -----------+  tier = next (keyframe);
             probe_duration (second look at probe_timeout)       next probe after
                                                                 step_hold; a step down
                                                                 within climb_grace
                                                                 doubles climb_hold

    REMB is optional and lags (a receiver's AIMD estimate climbs ~8 %/s after a lifted
    limit): it counts against a tier only after it fell and until it rises again; receiver
    reports (loss, RTT) are the ground truth.

    cap / low-bandwidth button: immediate step down to the limit; no probe above it.
    audio-only: only when the link estimate (REMB, loss-based, cap) AND the rate that
    arrives are under audio_floor x (low video + audio); it comes back by probing the low
    tier like any other climb.

Loss is pooled over >= min_packets packets when reports say how many they cover (GCC does
the same), smoothed fast (EWMA 0.5, for going down) and slow (EWMA 0.2 kept across
switches, for climbing). Hysteresis: down above loss_high (10 %), up only under loss_up
(5 %; halved after a step down for steady moderate loss), and a probe must show the loss
did not grow with the rate; a probe pads (``probe_bitrate``) by default, so a failed one is
invisible. Automatic switches are at least ``min_switch_gap`` apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .bandwidth_estimate import BandwidthEstimator, RateMeter, bandwidth_estimate
from .rate_config import (
    DOWN,
    PROBING,
    R_AUDIO_FLOOR,
    R_CAP,
    R_ESTIMATE,
    R_LINES,
    R_LOSS,
    R_MANUAL,
    R_PROBE_FAILED,
    R_PROBE_OK,
    R_PROBE_START,
    R_REMB,
    R_RTT,
    STEADY,
    UP,
    ControllerConfig,
    Decision,
    ReceiverReport,
)

__all__ = [
    "DOWN",
    "PROBING",
    "STEADY",
    "UP",
    "BandwidthEstimator",
    "ControllerConfig",
    "Decision",
    "RateController",
    "RateMeter",
    "ReceiverReport",
    "bandwidth_estimate",
]

class RateController:
    """Picks one subscriber's tier; see the module docstring for the state machine."""

    def __init__(self, config: ControllerConfig | None = None, *, now: float = 0.0,
                 cap: int | None = None, low_bandwidth: bool = False) -> None:
        self.config = config = config or ControllerConfig()
        self.ladder = ladder = config.ladder
        if config.manual_tier not in ladder:
            raise ValueError(f"manual_tier {config.manual_tier!r} is not in the ladder")
        self.cap = cap
        self.low_bandwidth = low_bandwidth
        self._required: Callable[[str], int] | None = None
        """The subscriber's budget per tier (set_budget); None: the ladder's."""
        self.estimator = BandwidthEstimator(
            loss_low=0.02, loss_high=config.loss_high,
            max_bitrate=max(2.0 * ladder.required(ladder.top), 1.0))
        start = config.initial_tier or ladder.top
        self.tier = ladder.lower_of(start, self.limit_tier())
        self.state = STEADY
        self.hold = config.hold
        """Seconds of clean link before the next probe (doubles on each failed probe)."""
        self.climb_hold = 0.0
        """Floor under ``hold`` after committed climbs that did not last."""
        self.switches: list[tuple[float, str, str, str]] = []
        """(time, from, to, reason) of every committed switch."""
        self.probes_failed = 0
        self.probes_passed = 0
        self.last_probe: tuple[float, str] | None = None
        """(time, outcome) of the last probe: ``probe_ok:<tier>`` or ``probe_failed:<why>``."""
        # link observations
        self.loss: float | None = None
        """Smoothed loss of the stream that carries the tier (video; audio while audio-only)."""
        self.last_loss: float | None = None
        self.packets_lost: int | None = None
        self.jitter: float | None = None
        self.rtt: float | None = None
        self._rtts: deque[tuple[float, float]] = deque()
        self.node_busy = False
        """Set by the relay while its own event loop runs late: the RTTs measured then
        include the node's delay in handling the report, not only the link's queue, so
        RTT growth is not taken as congestion (loss and REMB still are). Otherwise an
        overloaded node demotes every classroom at once and the extra tiers' encoders
        load it further."""
        self.remb: float | None = None
        self._remb_at: float | None = None
        self._remb_low_since: float | None = None
        self._remb_low_count = 0
        self._remb_fell = False
        """REMB fell (overuse) and has not risen since."""
        self._last_report: float | None = None
        self._report_at: dict[str, float] = {}
        """When the previous report about each kind of stream came (its interval's start)."""
        self.remb_ignored = 0
        # timers
        self._joined_at = now
        self._switched_at = now
        self._auto_switched_at: float | None = None
        self._climbed_at: float | None = None
        self._stepped = False
        """The tier came from a passed probe (the next probe may come after step_hold)."""
        self._fail_loss: float | None = None
        """Slow loss when the last probe failed (the path's loss then), for the reset."""
        self._since_fail: deque[tuple[float, float]] = deque(maxlen=64)
        """(expected, lost) packets of each report since the last failed probe."""
        self._unstable_at = now
        self._probe_ended_at = now
        self._congested_since: float | None = None
        self._congested_reports = 0
        self._congested = False
        self._moderate_since: float | None = None
        self._acc_expected = 0.0
        self._acc_lost = 0.0
        self.slow_loss: float | None = None
        self._climb_loss_limit = config.loss_up
        """Climbing needs the loss under this: loss_up, halved after a step down for steady
        moderate loss (so random loss near loss_up does not earn the climb back) until the
        slow loss falls under loss_up / 4."""
        self._report_times: deque[float] = deque(maxlen=16)
        # probe
        self._probe_tier: str | None = None
        self._probe_from: str | None = None
        self._probe_started = 0.0
        self._probe_losses: list[float] = []
        self._probe_looked = False
        self._probe_failed_now: str | None = None
        self._probe_base_loss = 0.0
        self._probe_base_rtt: float | None = None
        self._probe_rtts: list[float] = []
        self._probe_base_remb: float | None = None
        self._probe_settle = 0.0

    # ---- public inputs -----------------------------------------------------------------
    def on_receiver_report(self, now: float, report: ReceiverReport) -> Decision:
        loss = min(max(report.fraction_lost, 0.0), 1.0)
        previous = self._report_at.get(report.kind)
        self._report_at[report.kind] = now
        # on the lowest video tier, a report whose interval began before the switch there
        # describes the old tier (and the bottleneck queue it left, draining): seen at
        # 400 kbit/s, 52 % loss reported 1.4 s after high -> low took the classroom on to
        # audio-only. Pausing the video needs evidence about low itself. (Between video
        # tiers such a report still counts: stepping down fast is cheap.)
        straddles = (previous is not None and previous < self._switched_at
                     and self.tier == self.ladder.lowest_video)
        if report.rtt is not None and report.rtt >= 0:
            self.rtt = report.rtt
            self._rtts.append((now, report.rtt))
        while self._rtts and now - self._rtts[0][0] > self.config.rtt_base_window:
            self._rtts.popleft()
        settle = self.config.settle
        settling = (straddles or now - self._switched_at < settle
                    or now - self._probe_ended_at < max(settle, self._probe_settle))
        if not settling and self.state != PROBING:  # audio too: random loss is the path's
            self._watch_path(loss, report.expected)
        # the stream that carries the tier decides; audio loss above loss_high always counts
        # (audio is protected first); audio reports while video flows are otherwise ignored
        audio_only = not self.ladder.spec(self.tier).has_video
        relevant = (report.kind == "audio") == audio_only
        if not relevant and not (report.kind == "audio" and loss > self.config.loss_high):
            return self._evaluate(now)
        if report.packets_lost is not None:
            self.packets_lost = report.packets_lost
        if report.jitter is not None:
            self.jitter = report.jitter
        if settling or (self.state == PROBING and now - self._probe_started < settle):
            return self._evaluate(now)  # describes the rate before the change
        self._last_report = now
        if relevant and report.expected is not None:
            # GCC: a loss figure over fewer than ~20 packets is noise; accumulate reports
            self._acc_expected += max(report.expected, 0)
            self._acc_lost += loss * max(report.expected, 0)
            if self._acc_expected < self.config.min_packets:
                return self._evaluate(now)
            loss = self._acc_lost / self._acc_expected
            self._acc_expected = self._acc_lost = 0.0
        self._report_times.append(now)
        self.last_loss = loss
        a = self.config.loss_smoothing
        self.loss = loss if self.loss is None else a * loss + (1 - a) * self.loss
        if self.state != PROBING:  # the probe's extra traffic is not the path's loss
            b = self.config.slow_loss_smoothing
            clipped = min(loss, 2 * self.config.loss_high)
            self.slow_loss = clipped if self.slow_loss is None else (
                b * clipped + (1 - b) * self.slow_loss)
        if self.state != PROBING:  # loss the probe's padding caused is not the tier's
            self.estimator.on_report(now, loss)
        self._observe(now, loss)
        return self._evaluate(now)

    def on_remb(self, now: float, bitrate: float) -> Decision:
        c = self.config
        if now - self._joined_at < c.remb_join_grace:
            self.remb_ignored += 1  # the receiver's estimate is still ramping up
            return self._evaluate(now)
        previous = self._fresh_remb(now)
        self.remb = float(bitrate)
        self._remb_at = now
        if previous is None or bitrate < c.remb_fall * previous:
            self._remb_fell = True
        elif bitrate > previous:
            self._remb_fell = False
        if now - self._switched_at >= c.settle and self.ladder.spec(self.tier).has_video:
            required = self.required(self.tier)
            sent = self.estimator.sent_bitrate
            against = required if sent is None else min(required, sent)
            if bitrate < c.remb_down_ratio * against and self._remb_fell:
                if self._remb_low_since is None:
                    self._remb_low_since = now
                    self._remb_low_count = 0
                self._remb_low_count += 1
            else:
                self._remb_low_since = None
                self._remb_low_count = 0
        return self._evaluate(now)

    def on_bytes_sent(self, now: float, total_bytes: int) -> Decision:
        self.estimator.on_bytes_sent(now, total_bytes)
        return self._evaluate(now)

    def set_cap(self, now: float, cap: int | None) -> Decision:
        """Bit/s this subscriber may use (school cap / classrooms in the lesson); None: none."""
        self.cap = cap
        return self._apply_limit(now, R_CAP)

    def set_budget(self, now: float, required: Callable[[str], int] | None) -> Decision:
        """What the link must carry per tier, when the subscriber receives more than the
        camera and the teacher's audio (the share, the classroom on stage and its audio:
        ``Subscriber.required``); None: the ladder's own (one video line + audio). A tier
        the new budget no longer fits under the cap is left at once."""
        self._required = required
        return self._apply_limit(now, R_LINES)

    def required(self, tier: str) -> int:
        """Bit/s this subscriber's link must carry on ``tier`` (every line it receives)."""
        if self._required is None:
            return self.ladder.required(tier)
        return self._required(tier)

    def best_fitting(self, bitrate: float | None) -> str:
        """The best tier whose budget fits in ``bitrate`` (Ladder.best_fitting)."""
        return self.ladder.best_fitting(bitrate, self.required)

    def set_low_bandwidth(self, now: float, on: bool) -> Decision:
        self.low_bandwidth = on
        return self._apply_limit(now, R_MANUAL)

    def tick(self, now: float) -> Decision:
        return self._evaluate(now)

    # ---- views -------------------------------------------------------------------------
    @property
    def send_tier(self) -> str:
        """What to send: the tier, or the probe tier while probing with media."""
        if self.state == PROBING and self.config.probe_with_media and self._probe_tier:
            return self._probe_tier
        return self.tier

    def limit_tier(self) -> str:
        """The best tier the cap and the low-bandwidth button allow."""
        limit = self.ladder.top
        if self.cap is not None:
            limit = self.ladder.lower_of(limit, self.best_fitting(self.cap))
        if self.low_bandwidth:
            limit = self.ladder.lower_of(limit, self.config.manual_tier)
        return limit

    def link_estimate(self, now: float) -> float | None:
        """The lowest of the fresh REMB, the loss-based estimate and the cap (bit/s)."""
        values = [v for v in (self._fresh_remb(now), self.estimator.estimate, self.cap)
                  if v is not None]
        return min(values) if values else None

    def stats(self, now: float) -> dict:
        return {
            "tier": self.tier, "state": self.state, "probe_tier": self._probe_tier,
            "loss": self.loss, "packets_lost": self.packets_lost, "jitter": self.jitter,
            "rtt": self.rtt, "rtt_base": self._rtt_base(), "remb": self._fresh_remb(now),
            "estimate": self.estimator.estimate, "sent_bitrate": self.estimator.sent_bitrate,
            "cap": self.cap, "low_bandwidth": self.low_bandwidth,
            "hold": max(self.hold, self.climb_hold),
            "switches": len(self.switches), "probes_passed": self.probes_passed,
            "remb_ignored": self.remb_ignored, "last_probe": self.last_probe,
            "probes_failed": self.probes_failed, "node_busy": self.node_busy,
            "budget": self.required(self.tier),
        }

    # ---- observations ------------------------------------------------------------------
    def _fresh_remb(self, now: float) -> float | None:
        if self.remb is None or self._remb_at is None:
            return None
        return self.remb if now - self._remb_at <= self.config.remb_max_age else None

    def _rtt_base(self) -> float | None:
        return min(r for _, r in self._rtts) if self._rtts else None

    def _rtt_grown(self) -> bool:
        """RTT well above its base and not falling (a queue that drains is no congestion)."""
        base = self._rtt_base()
        if self.rtt is None or base is None or self.node_busy:
            return False
        c = self.config
        if len(self._rtts) >= 2 and self._rtts[-1][1] < self._rtts[-2][1] - c.rtt_falling:
            return False
        return self.rtt > base * c.rtt_growth and self.rtt > base + c.rtt_growth_min

    def _observe(self, now: float, loss: float) -> None:
        """Per relevant report: congestion bookkeeping (sustained, with hysteresis)."""
        c = self.config
        assert self.loss is not None
        lossy = self.loss > c.loss_high
        congested = lossy or self._rtt_grown()
        self._congested = lossy
        if congested:
            if self._congested_since is None:
                self._congested_since = now
                self._congested_reports = 0
            self._congested_reports += 1
        else:
            self._congested_since = None
            self._congested_reports = 0
        if congested:  # (one lossy report over ~20 packets is noise, not instability)
            self._unstable_at = now
        if (self.slow_loss or 0.0) > c.loss_up:
            if self._moderate_since is None:
                self._moderate_since = now
        else:
            self._moderate_since = None
        if self.state == PROBING:
            self._probe_observe(now, loss)

    def _pressure(self, now: float) -> tuple[str, float | None, bool] | None:
        """(reason, estimate, one step only) when the link cannot carry what is sent."""
        c = self.config
        required = self.required(self.tier)
        remb = self._fresh_remb(now)
        if (remb is not None and self._remb_low_since is not None
                and self._remb_low_count >= 2 and now - self._remb_low_since >= c.down_after):
            return R_REMB, remb, False
        estimate = self.estimator.estimate
        # RTT growth alone needs one report more than loss: the relay's own event-loop stalls
        # (a busy machine) inflate RTT for every classroom at once, for a report or two
        needed = 2 if self._congested else c.rtt_reports
        sustained = (self._congested_since is not None and self._congested_reports >= needed
                     and now - self._congested_since >= c.down_after)
        if not sustained:
            if (self._moderate_since is not None
                    and now - self._moderate_since >= c.moderate_after
                    and self.tier != self.ladder.lowest_video):
                return R_LOSS, estimate, True
            return None
        if self._congested:
            reason = R_LOSS
            if estimate is not None and estimate < c.estimate_down_ratio * required:
                reason = R_ESTIMATE
            return reason, estimate, False
        # RTT growth without loss: a queue builds (or the machine is busy): one step at a time,
        # and never below the lowest video tier (audio-only needs loss or a low estimate)
        if self.tier == self.ladder.lowest_video:
            return None
        return R_RTT, estimate, True

    # ---- the decision ------------------------------------------------------------------
    def _evaluate(self, now: float) -> Decision:
        c = self.config
        if self._climbed_at is not None and now - self._climbed_at >= c.climb_grace:
            self._climbed_at = None  # the climb lasted: forgive one failed one
            self.climb_hold = self.climb_hold / 2 if self.climb_hold / 2 >= c.hold else 0.0
        if self.state == PROBING:
            verdict = self._probe_verdict(now)
            if verdict is not None:
                return verdict
        pressure = self._pressure(now)
        if pressure is not None and self.ladder.spec(self.tier).has_video and self._may_switch(now):
            reason, estimate, one_step = pressure
            if self.state == PROBING:
                return self._probe_fail(now, reason)
            target = self._down_target(now, estimate)
            if one_step:  # moderate loss, or RTT growth alone: one step, never to audio-only
                below = self.ladder.below(self.tier)
                has_video = below is not None and self.ladder.spec(below).has_video
                target = below if has_video else self.tier
                if reason == R_LOSS:
                    self._climb_loss_limit = c.loss_up / 2
            if target != self.tier:
                return self._switch(now, target, reason, auto=True)
        if (self.state == STEADY and self._may_switch(now)
                and self.ladder.higher(self.limit_tier(), self.tier)
                and self._may_probe(now)):
            return self._probe_start(now)
        return self._decision()

    def _may_switch(self, now: float) -> bool:
        at = self._auto_switched_at
        return at is None or now - at >= self.config.min_switch_gap

    def _down_target(self, now: float, estimate: float | None) -> str:
        """At least one step down; further when the estimate says so. Audio-only only when
        the link estimate (REMB, loss-based, cap) is below the low tier's rate."""
        ladder = self.ladder
        one_down = ladder.below(self.tier) or self.tier
        fit = self.best_fitting(self.link_estimate(now))
        target = ladder.lower_of(one_down, fit)
        if not ladder.spec(target).has_video:
            link = self.link_estimate(now)
            floor = self.config.audio_floor * self.required(ladder.lowest_video)
            sent = self.estimator.sent_bitrate
            # ... and what arrives must be short of it too: random loss near 10 % on a wide
            # link can push the loss-based estimate down, but the delivered rate stays up
            delivered = None if sent is None else sent * (1.0 - (self.slow_loss or 0.0))
            # ... and the link must fall short of what is sent now: a REMB near the send rate
            # when the low tier sends less than its nominal rate (a still picture, a busy
            # encoder) says the link carries all of it, not that it cannot carry low
            carries_sent = link is not None and sent is not None and link >= 0.9 * sent
            if (link is None or link >= floor or carries_sent
                    or (delivered is not None and delivered >= floor)):
                target = ladder.lowest_video
        return ladder.lower_of(target, self.limit_tier())

    def _may_probe(self, now: float) -> bool:
        c = self.config
        if self._last_report is None or now - self._last_report > c.report_max_age:
            return False
        if self.loss is None or self._congested_since is not None:
            return False
        if self.slow_loss is not None and self.slow_loss < c.loss_up / 4:
            self._climb_loss_limit = c.loss_up  # clearly clean again: the normal limit
        if self.slow_loss is not None and self.slow_loss >= self._climb_loss_limit:
            return False
        if self._rtt_grown():
            return False
        stable_since = max(self._switched_at, self._unstable_at, self._probe_ended_at)
        hold, reports = max(self.hold, self.climb_hold), c.climb_reports
        if self._stepped and stable_since == self._switched_at:
            hold, reports = max(c.step_hold, self.climb_hold), c.step_reports
        if now - stable_since < hold:
            return False
        if sum(1 for t in self._report_times if t > stable_since) < reports:
            return False
        remb = self._fresh_remb(now)
        sent = self.estimator.sent_bitrate
        if (remb is not None and sent is not None and self._remb_fell
                and remb < c.remb_down_ratio * sent):
            return False  # the receiver says it gets less than is sent
        return True

    # ---- probing -----------------------------------------------------------------------
    def _probe_start(self, now: float) -> Decision:
        target = self.ladder.above(self.tier)
        assert target is not None
        self.state = PROBING
        self._probe_tier = target
        self._probe_from = self.tier
        self._probe_started = now
        self._probe_losses = []
        self._probe_looked = False
        self._probe_rtts = []
        self._probe_failed_now = None
        self._probe_base_loss = self.loss or 0.0
        recent = [r for t, r in self._rtts if now - t <= 5.0]
        self._probe_base_rtt = min(recent) if recent else None
        self._probe_base_remb = self._fresh_remb(now)
        if self.config.probe_with_media:
            return self._decision(changed=True, previous=self.tier, reason=R_PROBE_START,
                                  direction=UP)
        return self._decision(reason=R_PROBE_START)

    def _probe_observe(self, now: float, loss: float) -> None:
        self._probe_losses.append(loss)
        c = self.config
        if self.rtt is not None:
            self._probe_rtts.append(self.rtt)
        rtts = self._probe_rtts
        base = self._probe_base_rtt
        rising = (base is not None and len(rtts) >= 2
                  and all(a < b for a, b in zip([base, *rtts], rtts, strict=False))
                  and rtts[-1] - base > c.probe_rtt_rise / 2)
        if loss > c.loss_high:
            self._probe_failed_now = R_LOSS
        elif self._rtt_grown() or rising or (
                base is not None and rtts and rtts[-1] > base + c.probe_rtt_rise):
            self._probe_failed_now = R_RTT

    def _probe_verdict(self, now: float) -> Decision | None:
        c = self.config
        if self._probe_failed_now is not None:
            return self._probe_fail(now, self._probe_failed_now)
        remb = self._fresh_remb(now)
        if (self._probe_base_remb is not None and remb is not None
                and remb < c.probe_remb_drop * self._probe_base_remb
                and self._probe_reports_agree()):
            return self._probe_fail(now, R_REMB)
        if self.ladder.higher(self._probe_tier or self.tier, self.limit_tier()):
            return self._probe_fail(now, R_CAP, backoff=False)
        losses = self._probe_losses
        elapsed = now - self._probe_started
        # two looks at the mean loss, no more (looking until it happens to pass would pass
        # on noise): after probe_duration, and, if it was not under the limit, at timeout
        if elapsed >= c.probe_duration and len(losses) >= c.probe_reports and (
                not self._probe_looked or elapsed >= c.probe_timeout):
            self._probe_looked = True
            base = max(self._probe_base_loss, self.slow_loss or 0.0)
            limit = min(base + c.probe_loss_margin, self._climb_loss_limit)
            if sum(losses) / len(losses) < limit:
                return self._probe_pass(now)
        if elapsed >= c.probe_timeout:
            return self._probe_fail(now, R_LOSS if losses else "probe_timeout")
        return None

    def _probe_reports_agree(self) -> bool:
        """The receiver reports back a fallen REMB: the probe's loss rose above its
        pre-probe level, or its RTT rose. No reports yet, or ~0 loss and a flat RTT: no."""
        c = self.config
        losses, rtts, base = self._probe_losses, self._probe_rtts, self._probe_base_rtt
        if losses and sum(losses) / len(losses) > self._probe_base_loss + c.probe_loss_margin / 4:
            return True
        return base is not None and bool(rtts) and rtts[-1] > base + c.probe_rtt_rise / 2

    def _watch_path(self, loss: float, expected: int | None) -> None:
        """Reset the probe backoff when the random loss seen at the last failed probe has
        gone (see ``reset_packets``)."""
        c = self.config
        if self._fail_loss is None or self.hold <= c.hold:
            return
        count = float(expected if expected is not None else c.min_packets)
        self._since_fail.append((count, loss * count))
        expected_total = lost = 0.0
        for count, lost_here in reversed(self._since_fail):  # the newest reports
            expected_total += count
            lost += lost_here
            if expected_total >= c.reset_packets:
                if lost / expected_total < self._fail_loss / 5:
                    self.hold = c.hold
                    self._fail_loss = None
                return

    def _probe_pass(self, now: float) -> Decision:
        target = self._probe_tier
        assert target is not None
        self.last_probe = (round(now, 3), f"{R_PROBE_OK}:{target}")
        self._probe_settle = 0.0
        self.probes_passed += 1
        self.estimator.raise_to(self.required(target))
        self._end_probe(now)
        self.hold = self.config.hold
        self._climbed_at = now
        self._stepped = True
        self._fail_loss = None
        if self.config.probe_with_media:  # already sending it: commit without a new switch
            previous = self.tier
            self.tier = target
            self.switches.append((now, previous, target, R_PROBE_OK))
            self._reset_after_switch(now, auto=True)
            return self._decision(reason=R_PROBE_OK)
        return self._switch(now, target, R_PROBE_OK, auto=True)

    def _probe_fail(self, now: float, why: str, *, backoff: bool = True) -> Decision:
        if backoff:
            self.probes_failed += 1
            self.hold = min(self.hold * 2.0, self.config.hold_max)
            loss = self.slow_loss or 0.0
            self._fail_loss = loss if loss >= 0.01 else None
            self._since_fail.clear()
        self._stepped = False
        probing = self.send_tier
        self._end_probe(now)
        self._probe_settle = self.config.probe_fail_settle
        self._unstable_at = now
        self._forget_loss()  # the probe's loss says nothing about the tier without it
        reason = f"{R_PROBE_FAILED}:{why}"
        self.last_probe = (round(now, 3), reason)
        if self.config.probe_with_media and probing != self.tier:
            self._reset_after_switch(now, auto=True)
            return self._decision(changed=True, previous=probing, reason=reason,
                                  direction=DOWN)
        return self._decision(reason=reason)

    def _end_probe(self, now: float) -> None:
        self.state = STEADY
        self._probe_tier = None
        self._probe_from = None
        self._probe_ended_at = now

    # ---- switching ---------------------------------------------------------------------
    def _apply_limit(self, now: float, reason: str) -> Decision:
        limit = self.limit_tier()
        if self.state == PROBING and self.ladder.higher(self._probe_tier or self.tier, limit):
            decision = self._probe_fail(now, reason, backoff=False)
            if self.ladder.higher(self.tier, limit):
                return self._switch(now, limit, reason, auto=False)
            return decision
        if self.ladder.higher(self.tier, limit):
            return self._switch(now, limit, reason, auto=False)
        return self._evaluate(now)

    def _switch(self, now: float, target: str, reason: str, *, auto: bool) -> Decision:
        previous = self.send_tier
        direction = UP if self.ladder.higher(target, self.tier) else DOWN
        if direction == DOWN:
            self._stepped = False
        if auto and direction == DOWN and self._climbed_at is not None:
            c = self.config  # the climb did not last
            self.climb_hold = min(max(2 * self.climb_hold, 4 * c.hold), c.climb_hold_max)
            self.hold = min(self.hold * 2.0, c.hold_max)
            self._climbed_at = None
        if not self.ladder.spec(target).has_video and reason in (R_LOSS, R_ESTIMATE, R_REMB,
                                                                  R_RTT):
            reason = f"{R_AUDIO_FLOOR}:{reason}"
        if self.state == PROBING:
            self._end_probe(now)
        self.tier = target
        self.switches.append((now, previous, target, reason))
        self._reset_after_switch(now, auto=auto)
        return self._decision(changed=previous != target, previous=previous, reason=reason,
                              direction=direction)

    def _reset_after_switch(self, now: float, *, auto: bool) -> None:
        self._switched_at = now
        if auto:
            self._auto_switched_at = now
        self._forget_loss()  # the old tier's loss says nothing about the new one

    def _forget_loss(self) -> None:
        self._acc_expected = self._acc_lost = 0.0
        self._congested_since = None
        self._congested_reports = 0
        self._congested = False
        self._moderate_since = None
        self._remb_low_since = None
        self._remb_low_count = 0
        self.loss = None

    def _decision(self, *, changed: bool = False, previous: str | None = None,
                  reason: str = "", direction: str | None = None) -> Decision:
        probe_bitrate = None
        if self.state == PROBING and self._probe_tier is not None:
            probe_bitrate = self.required(self._probe_tier)
        return Decision(tier=self.send_tier, changed=changed, previous=previous, reason=reason,
                        direction=direction if changed else None, state=self.state,
                        probe_bitrate=probe_bitrate, probe_tier=self._probe_tier)

