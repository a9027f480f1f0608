"""The real-link harness does what it says: rate, loss, reachability, and a clean tear-down."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests import netlab
from tests.netlab import NetLab

OK, WHY = netlab.available()
pytestmark = pytest.mark.skipif(not OK, reason=WHY or "netlab unavailable")

# A UDP receiver run inside the namespace: counts datagrams until `idle` s without one (or
# `limit` s in all) and prints {"count", "bytes", "first", "last"} as JSON.
RECEIVER = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
idle, limit = float(sys.argv[2]), float(sys.argv[3])
count = size = 0
first = last = None
start = time.monotonic()
s.settimeout(limit)
while time.monotonic() - start < limit:
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    now = time.monotonic()
    if first is None:
        first = now
        s.settimeout(idle)
    last = now
    count += 1
    size += len(data)
print(json.dumps({"count": count, "bytes": size, "first": first, "last": last}), flush=True)
"""


def receive(lab: NetLab, idle: float = 1.0, limit: float = 10.0):
    proc = lab.popen(sys.executable, "-c", RECEIVER, lab.ns_ip, str(idle), str(limit),
                     stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


def send(host: str, port: int, count: int, size: int, rate_bps: float) -> None:
    """``count`` datagrams of ``size`` bytes, paced at ``rate_bps`` (bounded in count)."""
    gap = size * 8 / rate_bps
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        start = time.monotonic()
        for i in range(count):
            delay = start + i * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            s.sendto(b"x" * size, (host, port))


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=15)
    return json.loads(out.strip().splitlines()[-1])


def gone(lab: NetLab) -> bool:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    link = subprocess.run(["ip", "link", "show", lab.host_if], capture_output=True)
    return lab.ns not in names.split() and link.returncode != 0


def test_rate_loss_and_teardown() -> None:
    with NetLab() as lab:
        assert lab.host_ip.startswith("10.200.") and lab.host_ip.endswith(".1")
        assert lab.ns_ip == lab.host_ip[:-1] + "2"
        # server -> classroom at 400 kbit/s: offer 1 Mbit/s for 3 s
        lab.shape(400)
        proc, port = receive(lab)
        send(lab.ns_ip, port, count=375, size=1000, rate_bps=1_000_000)
        got = result(proc)
        rate = got["bytes"] * 8 / (got["last"] - got["first"])
        assert 300_000 <= rate <= 500_000, got
        assert got["count"] < 300  # the rest was dropped by the bucket
        # 10 % random loss on ~1000 datagrams, unshaped
        lab.unshape()
        lab.loss(10)
        proc, port = receive(lab)
        send(lab.ns_ip, port, count=1000, size=200, rate_bps=4_000_000)
        lost = 1 - result(proc)["count"] / 1000
        assert 0.04 <= lost <= 0.18, lost
        lab.loss(0)
        lab.shape(1000)
        lab.change(200)
        assert "rate 200Kbit" in lab.stats()["qdisc"]
    assert gone(lab)


def test_teardown_when_the_test_fails_and_processes_are_stopped() -> None:
    with pytest.raises(RuntimeError), NetLab() as lab:
        sleeper = lab.popen("sleep", "60")
        lab.shape(400)
        lab.loss(5)
        raise RuntimeError("a failing test")
    assert gone(lab)
    assert sleeper.poll() is not None


def test_namespace_reaches_a_server_on_the_host_side_address() -> None:
    """What an aiortc classroom inside needs: UDP and TCP to 10.200.X.1 (the server)."""
    with NetLab() as lab, socket.socket() as tcp, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind((lab.host_ip, 0))
        tcp.listen(1)
        udp.bind((lab.host_ip, 0))
        udp.settimeout(5)
        accepted: list[bytes] = []

        def accept() -> None:
            tcp.settimeout(5)
            conn, _ = tcp.accept()
            with conn:
                accepted.append(conn.recv(100))

        thread = threading.Thread(target=accept)
        thread.start()
        code = (
            "import socket, sys\n"
            "c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
            "c.sendall(b'tcp-ok'); c.close()\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.sendto(b'udp-ok', (sys.argv[1], int(sys.argv[3])))\n"
        )
        lab.run(sys.executable, "-c", code, lab.host_ip, str(tcp.getsockname()[1]),
                str(udp.getsockname()[1]), timeout=10)
        thread.join(timeout=6)
        data, addr = udp.recvfrom(100)
        assert accepted == [b"tcp-ok"] and data == b"udp-ok" and addr[0] == lab.ns_ip


def test_labs_get_distinct_subnets_and_are_bounded() -> None:
    with NetLab() as a, NetLab() as b:
        assert a.octet != b.octet and a.ns != b.ns
    assert gone(a) and gone(b)
