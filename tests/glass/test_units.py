"""Pure logic of glass-to-glass latency: sender-report mapping, the capture ring, the clock
arithmetic and the validation of a page's report (signaling/glass.py)."""

from __future__ import annotations

import pytest

from media_relay.capture_clock import (
    NTP_UNIX_OFFSET,
    CaptureMap,
    SenderClock,
    ntp_to_unix,
    rtp_diff,
)
from signaling.errors import ClassroomError
from signaling.glass import (
    check_clock,
    check_samples,
    glass_seconds,
    page_to_server,
    percentile,
)


def ntp_of(unix: float) -> int:
    return int((unix + NTP_UNIX_OFFSET) * (1 << 32))


def test_ntp_to_unix() -> None:
    assert ntp_to_unix(ntp_of(1_764_000_000.25)) == pytest.approx(1_764_000_000.25, abs=1e-6)


def test_rtp_diff_wraps_the_short_way() -> None:
    assert rtp_diff(10, 0xFFFFFFF0) == 26
    assert rtp_diff(0xFFFFFFF0, 10) == -26
    assert rtp_diff(90_000, 0) == 90_000


def test_sender_clock_maps_rtp_to_capture_time() -> None:
    clock = SenderClock(90_000)
    assert clock.capture_of(1234, now=0.0) is None  # no report yet
    clock.on_report(ntp_of(1000.0), 0xFFFFFF00, now=5.0)
    # 3000 ticks later at 90 kHz is 1/30 s later, across the 32-bit wrap
    later = (0xFFFFFF00 + 3000) & 0xFFFFFFFF
    assert clock.capture_of(later, now=5.1) == pytest.approx(1000.0 + 3000 / 90_000, abs=1e-6)
    assert clock.capture_of(0xFFFFFF00 - 9000, now=5.1) == pytest.approx(999.9, abs=1e-6)
    assert clock.capture_of(later, now=40.0) is None  # the report is too old
    # a timestamp a minute away is not this stream
    assert clock.capture_of((0xFFFFFF00 + 90_000 * 60) & 0xFFFFFFFF, now=5.1) is None
    audio = SenderClock(48_000)
    audio.on_report(ntp_of(50.0), 960, now=1.0)
    assert audio.capture_of(960 + 480, now=1.0) == pytest.approx(50.01, abs=1e-6)


def test_capture_map_is_a_bounded_ring() -> None:
    ring = CaptureMap(size=4)
    ring.note(1, None)  # unknown capture times are not kept
    assert len(ring) == 0
    for key in range(6):
        ring.note(key + (1 << 32), 100.0 + key)  # keyed on the low 32 bits
    assert len(ring) == 4
    assert ring.lookup(0) is None and ring.lookup(1) is None
    assert ring.lookup(5) == 105.0 and ring.lookup(2) == 102.0
    ring.note(5, 200.0)  # the same timestamp again: replaced, nothing evicted
    assert ring.lookup(5) == 200.0 and ring.lookup(2) == 102.0


def test_glass_is_playout_minus_capture_in_the_server_clock() -> None:
    # teacher's clock 2 s ahead of the server, classroom's 3 s behind
    capture_server = 1000.0
    capture_teacher = capture_server + 2.0
    playout_server = 1000.150
    playout_page_ms = (playout_server - 3.0) * 1000
    assert page_to_server(playout_page_ms, -3.0) == pytest.approx(playout_server)
    assert glass_seconds(capture_teacher, 2.0, playout_page_ms, -3.0) == pytest.approx(0.150)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0


def test_clock_validation() -> None:
    clock = check_clock(-1500.5, 2.0)
    assert clock.offset == pytest.approx(-1.5005) and clock.rtt == pytest.approx(0.002)
    for offset, rtt in ((1e9, 1), (0, -1), (0, 60_000), (True, 1), (0, "1")):
        with pytest.raises(ClassroomError):
            check_clock(offset, rtt)


def test_sample_validation() -> None:
    good = {"kind": "video", "ssrc": 0xFFFFFFFF, "rtp": 0, "at_ms": 1.7e12}
    assert check_samples(None) == []
    assert check_samples([good]) == [("video", 0xFFFFFFFF, 0, 1.7e12)]
    bad = [
        [good] * 5,  # too many
        ["x"],
        [{**good, "kind": "screen"}],
        [{**good, "ssrc": -1}],
        [{**good, "rtp": 1 << 32}],
        [{**good, "ssrc": True}],
        [{**good, "at_ms": 0}],
        [{**good, "at_ms": "now"}],
        {"kind": "video"},
    ]
    for samples in bad:
        with pytest.raises(ClassroomError):
            check_samples(samples)
