"""A fixed media port range (``RelayConfig.rtc_ports``, media_relay/port_range.py): the
relay's sockets are bound only there, a range of one port serves one peer connection and
refuses the next with ``media_failed`` (no hang), the port returns on close; real aiortc
peers on both sides."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from prometheus_client import REGISTRY

from media_relay import Relay, RelayError
from media_relay.port_range import PortPool, PortsExhausted, parse_port_range
from media_relay.sockets import peer_sockets
from tests.udp_ports import candidate_ports, free_udp_range

from .peers import publish, subscribe, wait_until


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_parse_port_range() -> None:
    assert parse_port_range("40000-40099") == (40000, 40099)
    assert parse_port_range(" 40000-40000 ") == (40000, 40000)
    for bad in ("", "40000", "a-b", "40010-40000", "40000-70000", "80-90", "-1-5", "1-2-3"):
        with pytest.raises(ValueError, match="--rtc-ports"):
            parse_port_range(bad)


def test_pool_binds_first_free_port_skips_taken_ones_and_reuses_closed_ones() -> None:
    low, high = free_udp_range(2)
    pool = PortPool(low, high)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", low))  # someone else holds the first port
    try:
        first = pool.bind("127.0.0.1")
        assert first.getsockname()[1] == high
        with pytest.raises(PortsExhausted, match=f"no free UDP port in {low}-{high}"):
            pool.bind("127.0.0.1")
        assert pool.in_use() == 1  # only the relay's own sockets count
        first.close()
        assert pool.in_use() == 0
        assert pool.bind("127.0.0.1").getsockname()[1] == high
    finally:
        other.close()


async def test_one_port_serves_one_peer_refuses_the_next_and_is_released(
        make_relay, events) -> None:
    low, high = free_udp_range(1)
    relay: Relay = make_relay(rtc_ports=(low, high))
    exhausted = metric("classroom_rtc_ports_exhausted_total")

    teacher = await publish(relay, "P1")
    answer = relay._peers["teacher"].pc.localDescription.sdp
    assert candidate_ports(answer) and set(candidate_ports(answer)) == {low}
    assert {s.getsockname()[1] for s in peer_sockets(relay._peers["teacher"].pc)} == {low}
    # the test's own aiortc peer in this process is not bound in the range
    assert low not in candidate_ports(teacher.pc.localDescription.sdp)
    await wait_until(lambda: "connected" in events.states_of("teacher"), 10, "teacher connected")
    await wait_until(lambda: ("P1", True) in events.publisher, 10, "teacher's media flowing")
    assert metric("classroom_rtc_ports_in_use") >= 1

    started = time.monotonic()
    with pytest.raises(RelayError) as refused:
        await subscribe(relay, "P1", "c1")
    assert refused.value.reason == RelayError.MEDIA_FAILED
    assert f"{low}-{high}" in str(refused.value)
    assert time.monotonic() - started < 5  # refused at once, no hang
    assert metric("classroom_rtc_ports_exhausted_total") == exhausted + 1
    assert "c1" not in relay._peers and relay.stats()["subscribers"] == 0

    # the teacher leaves: the port comes back and the next peer gets it
    await relay.remove_peer("teacher")
    await teacher.close()
    await wait_until(lambda: metric("classroom_rtc_ports_in_use") == 0, 5, "port released")
    room = await subscribe(relay, "P1", "c2")
    assert set(candidate_ports(relay._peers["c2"].pc.localDescription.sdp)) == {low}
    await room.close()


async def test_without_a_range_ports_are_ephemeral(relay: Relay) -> None:
    teacher = await publish(relay, "P2")
    ports = candidate_ports(relay._peers["teacher"].pc.localDescription.sdp)
    assert ports and all(p >= 32768 for p in ports)  # the kernel's ephemeral range
    await teacher.close()


def test_serve_refuses_a_bad_range_with_one_line() -> None:
    for bad in ("40010-40000", "40000", "x-y"):
        proc = subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--rtc-ports", bad],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2
        assert "--rtc-ports must be LOW-HIGH" in proc.stderr.splitlines()[-1]
        assert "Traceback" not in proc.stderr
