"""Real-link test harness: a network namespace behind a shaped, lossy veth (NETWORK-TESTS.md).

    from tests.netlab import NetLab, available

    ok, why = available()
    if not ok:
        pytest.skip(why)
    with NetLab() as lab:                       # 10.200.X.0/24, X unique to this run
        lab.shape(400)                          # server -> classroom: tbf 400 kbit/s
        lab.loss(3)                             # 3 % of UDP into the namespace dropped
        proc = lab.popen(sys.executable, "-m", "classroom_client", ...)   # inside
        ...                                     # a server listens on lab.host_ip
        lab.change(100)                         # cut the rate in place
        lab.unshape()
    # namespace, veth pair and every process started with lab.popen are gone, even when
    # the body raised

The host side of the veth is ``lab.host_ip`` (``10.200.X.1``), the namespace side
``lab.ns_ip`` (``10.200.X.2``). Offloads (TSO/GSO/GRO) are off on both ends, or shaped UDP
is silently dropped. The kernel here has no ``netem``: rate is ``tc tbf`` on the sending
side, loss is an nftables rule; added delay needs a user-space UDP relay.

Only addresses of namespaces this module created are touched. At most ``MAX_LABS`` labs
live at once in a process, and every command has a timeout.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Sequence

TOOLS = ("ip", "tc", "nft", "ethtool")
MAX_LABS = 4
COMMAND_TIMEOUT = 10.0
SUBNET_PREFIX = "10.200"

_lock = threading.Lock()
_live: list[NetLab] = []
_available: tuple[bool, str] | None = None


class NetLabError(RuntimeError):
    pass


def _cmd(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
         ns: str | None = None) -> subprocess.CompletedProcess:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetLabError(f"{' '.join(argv)} failed ({proc.returncode}): "
                          f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def available() -> tuple[bool, str]:
    """(True, "") when namespaces can be made here, else (False, why) for pytest.skip."""
    global _available
    if _available is not None:
        return _available
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        _available = (False, f"netlab: missing {', '.join(missing)} "
                              "(scripts/test installs iproute2, nftables, ethtool)")
    elif os.geteuid() != 0:
        _available = (False, "netlab: network namespaces need root")
    else:
        name = f"netlab-probe-{os.getpid()}"
        try:
            _cmd("ip", "netns", "add", name)
        except (NetLabError, subprocess.TimeoutExpired, OSError) as exc:
            _available = (False, f"netlab: cannot create a network namespace: {exc}")
        else:
            _cmd("ip", "netns", "del", name, check=False)
            _available = (True, "")
    return _available


def _used_subnets() -> set[int]:
    """Third octets of 10.200.X.0/24 networks already on this host (any namespace we see)."""
    out = _cmd("ip", "-o", "-4", "addr", "show", check=False).stdout
    out += _cmd("ip", "-4", "route", "show", check=False).stdout
    used = set()
    for word in out.split():
        addr = word.split("/")[0]
        if addr.startswith(SUBNET_PREFIX + "."):
            try:
                used.add(int(ipaddress.IPv4Address(addr).packed[2]))
            except ValueError:
                pass
    return used


class NetLab:
    """One namespace (the classroom) joined by a veth pair to the host (the server)."""

    def __init__(self, *, offloads_off: bool = True) -> None:
        self.offloads_off = offloads_off
        self.tag = f"{os.getpid() % 0xFFFF:04x}{random.randrange(0x100):02x}"
        self.ns = f"netlab-{self.tag}"
        self.host_if = f"vh{self.tag}"  # interface names: at most 15 characters
        self.ns_if = f"vr{self.tag}"
        self.octet: int | None = None
        self.host_ip = ""
        self.ns_ip = ""
        self.rate_kbit: float | None = None
        self.loss_percent = 0.0
        self._procs: list[subprocess.Popen] = []
        self._created_ns = False
        self._created_link = False

    # ---- lifetime ----------------------------------------------------------------------
    def __enter__(self) -> NetLab:
        ok, why = available()
        if not ok:
            raise NetLabError(why)
        with _lock:
            if len(_live) >= MAX_LABS:
                raise NetLabError(f"netlab: at most {MAX_LABS} labs at once")
            _live.append(self)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        _cmd("ip", "netns", "add", self.ns)
        self._created_ns = True
        _cmd("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._created_link = True
        _cmd("ip", "link", "set", self.ns_if, "netns", self.ns)
        _cmd("ip", "link", "set", self.host_if, "up")  # (a down link has no subnet route)
        rng = random.Random(os.getpid() ^ random.getrandbits(32))
        for _ in range(20):  # pick 10.200.X.0/24 not in use; re-check after claiming it
            octet = rng.randrange(1, 255)
            if octet in _used_subnets():
                continue
            host_ip = f"{SUBNET_PREFIX}.{octet}.1"
            _cmd("ip", "addr", "add", f"{host_ip}/24", "dev", self.host_if)
            routes = _cmd("ip", "-4", "route", "show", f"{SUBNET_PREFIX}.{octet}.0/24",
                          check=False).stdout.strip().splitlines()
            if len(routes) == 1:
                self.octet, self.host_ip = octet, host_ip
                self.ns_ip = f"{SUBNET_PREFIX}.{octet}.2"
                break
            _cmd("ip", "addr", "del", f"{host_ip}/24", "dev", self.host_if, check=False)
        else:
            raise NetLabError("netlab: no free 10.200.X.0/24 subnet")
        _cmd("ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if, ns=self.ns)
        _cmd("ip", "link", "set", self.ns_if, "up", ns=self.ns)
        _cmd("ip", "link", "set", "lo", "up", ns=self.ns)
        if self.offloads_off:  # else GSO super-packets exceed the tbf burst and vanish
            _cmd("ethtool", "-K", self.host_if, "tso", "off", "gso", "off", "gro", "off")
            _cmd("ethtool", "-K", self.ns_if, "tso", "off", "gso", "off", "gro", "off",
                 ns=self.ns)

    def close(self) -> None:
        """Stop our processes, delete the namespace and the veth pair. Idempotent."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        if self._created_ns:
            _cmd("ip", "netns", "del", self.ns, check=False)  # takes the ns end with it
            self._created_ns = False
        if self._created_link:
            if _cmd("ip", "link", "show", self.host_if, check=False).returncode == 0:
                _cmd("ip", "link", "del", self.host_if, check=False)
            self._created_link = False
        with _lock:
            if self in _live:
                _live.remove(self)

    # ---- shaping -----------------------------------------------------------------------
    def shape(self, rate_kbit: float, burst_kbit: float = 16, latency_ms: float = 200) -> None:
        """Token bucket on the host side: server -> classroom at ``rate_kbit``."""
        verb = "change" if self.rate_kbit is not None else "add"
        _cmd("tc", "qdisc", verb, "dev", self.host_if, "root", "tbf",
             "rate", f"{rate_kbit:g}kbit", "burst", f"{burst_kbit:g}kbit",
             "latency", f"{latency_ms:g}ms")
        self.rate_kbit = rate_kbit

    def change(self, rate_kbit: float, burst_kbit: float = 16, latency_ms: float = 200) -> None:
        """The rate in place (no flush of what is queued)."""
        if self.rate_kbit is None:
            raise NetLabError("netlab: change() before shape()")
        self.shape(rate_kbit, burst_kbit, latency_ms)

    def unshape(self) -> None:
        if self.rate_kbit is not None:
            _cmd("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)
            self.rate_kbit = None

    def loss(self, percent: float) -> None:
        """Drop ``percent`` % of UDP arriving in the namespace at random (0 removes it)."""
        _cmd("nft", "delete", "table", "inet", "netlab", ns=self.ns, check=False)
        self.loss_percent = 0.0
        if percent <= 0:
            return
        per_mille = round(percent * 10)
        _cmd("nft", "add", "table", "inet", "netlab", ns=self.ns)
        _cmd("nft", "add", "chain", "inet", "netlab", "in",
             "{ type filter hook input priority 0; }", ns=self.ns)
        _cmd("nft", "add", "rule", "inet", "netlab", "in", "meta", "l4proto", "udp",
             "numgen", "random", "mod", "1000", "<", str(per_mille), "drop", ns=self.ns)
        self.loss_percent = per_mille / 10

    # ---- processes in the namespace ----------------------------------------------------
    def _argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(self, *cmd: str, timeout: float = 30.0, check: bool = True,
            **kwargs) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the namespace and wait (captured text output by default)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self._argv(cmd), timeout=timeout, check=check, **kwargs)

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        """Start ``cmd`` inside the namespace; it is killed when the lab closes."""
        proc = subprocess.Popen(self._argv(cmd), **kwargs)
        self._procs.append(proc)
        return proc

    def stats(self) -> dict:
        """The host side's qdisc counters (sent, dropped, overlimits) as tc prints them."""
        out = _cmd("tc", "-s", "qdisc", "show", "dev", self.host_if, check=False).stdout
        return {"qdisc": out, "rate_kbit": self.rate_kbit, "loss_percent": self.loss_percent}


@atexit.register
def _close_all() -> None:  # a test run killed half-way still cleans up what it made
    for lab in list(_live):
        lab.close()
