"""Recording metrics (default Prometheus registry; ``classroom_recording_bytes_total`` is fixed
by DESIGN.md, the others are this package's own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BYTES = Counter(
    "classroom_recording_bytes_total",
    "Bytes of finished recording segments written to the library (fsync'd)",
)
SEGMENTS = Counter(
    "classroom_recording_segments_total", "Recording segments closed, fsync'd and indexed"
)
ACTIVE = Gauge("classroom_recording_active", "Recordings being written on this node")
ERRORS = Counter(
    "classroom_recording_errors_total",
    "Recording faults: disk_full, write (other I/O), overflow (writer behind), "
    "packaging, recovery",
    ["reason"],
)
DROPPED = Counter(
    "classroom_recording_dropped_packets_total",
    "Packets not recorded (writer behind, after a write error, waiting for a keyframe)",
)
PACKAGING_SECONDS = Histogram(
    "classroom_recording_packaging_seconds",
    "Time to package one recording for replay (HLS ladder, audio-only, MP4, pictures)",
    buckets=(1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1200),
)
RECOVERED = Counter(
    "classroom_recording_recovered_total",
    "Recordings found unfinished at start (process killed) and recovered",
)
