"""Prometheus metrics of the relay (default registry; names fixed by DESIGN.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FORWARD_LATENCY = Histogram(
    "classroom_relay_forward_latency_seconds",
    "Time from a media frame's arrival in the relay to its hand-off to a subscriber's sender",
    ["kind"],
    buckets=(
        0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02,
        0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0,
    ),
)
SUBSCRIBERS = Gauge(
    "classroom_subscribers", "Subscribers attached to a rendition of the relay", ["tier"]
)
KEYFRAMES = Counter(
    "classroom_relay_keyframes_total",
    "Keyframes produced by the relay's encoders, by what caused them",
    ["reason"],
)
FRAMES_DROPPED = Counter(
    "classroom_relay_frames_dropped_total",
    "Frames or packets the relay dropped (queue overflow, waiting for a keyframe, encoder busy)",
    ["kind"],
)
ENCODE_SECONDS = Histogram(
    "classroom_relay_encode_seconds",
    "Time to encode one video frame of a rendition",
    buckets=(0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1),
)
PUBLISHERS = Gauge("classroom_relay_publishers", "Publishers connected to the relay")

LATENCY_AUDIO = FORWARD_LATENCY.labels(kind="audio")
LATENCY_VIDEO = FORWARD_LATENCY.labels(kind="video")
DROPPED_AUDIO = FRAMES_DROPPED.labels(kind="audio")
DROPPED_VIDEO = FRAMES_DROPPED.labels(kind="video")

TIER_SWITCHES = Counter(
    "classroom_tier_switches_total",
    "Subscribers moved between tiers of the ladder (rate control, cap or low-bandwidth)",
    ["direction"],
)
SUBSCRIBER_RTT = Histogram(
    "classroom_subscriber_rtt_seconds",
    "Round-trip time to a subscriber, observed per RTCP receiver report",
    buckets=(0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0),
)
SUBSCRIBER_LOSS = Histogram(
    "classroom_subscriber_loss_ratio",
    "Fraction of packets lost towards a subscriber, observed per RTCP receiver report",
    buckets=(0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
)

# ---- two-way lesson (issue 7) --------------------------------------------------------
UPLINKS = Gauge("classroom_uplinks", "Classroom uplinks (camera + microphone) connected")
UPLINK_VIOLATIONS = Counter(
    "classroom_uplink_violations_total",
    "Uplinks reported for breaking their limits (over the bitrate cap)",
    ["code"],
)
STAGE_SWITCHES = Counter(
    "classroom_stage_switches_total", "Times a lesson's stage changed (a classroom called or left)"
)
GRID_TILE_SWITCH_SECONDS = Histogram(
    "classroom_grid_tile_switch_seconds",
    "From a grid slot getting another classroom (grid-view, paging) to that classroom's "
    "first frame (a keyframe) forwarded on it",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
STAGE_SWITCH_SECONDS = Histogram(
    "classroom_stage_switch_seconds",
    "From set_stage to the new stage classroom's first video frame written to a subscriber",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
LATENCY_STAGE_AUDIO = FORWARD_LATENCY.labels(kind="stage_audio")
LATENCY_STAGE_VIDEO = FORWARD_LATENCY.labels(kind="stage_video")
LATENCY_SHARE = FORWARD_LATENCY.labels(kind="share")
LATENCY_GRID = FORWARD_LATENCY.labels(kind="grid")

CASCADE_HOP = Histogram(
    "classroom_cascade_hop_seconds",
    "Origin fan-out to edge hand-off of one cascade link frame (wall clocks of two nodes)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
CASCADE_FRAMES = Counter(
    "classroom_cascade_frames_total",
    "Cascade link frames: down (origin to this edge, received) and up (this edge's "
    "classrooms' uplinks to the origin, sent)",
    ["direction"],
)
CASCADE_DOWN = CASCADE_FRAMES.labels(direction="down")
CASCADE_UP = CASCADE_FRAMES.labels(direction="up")
