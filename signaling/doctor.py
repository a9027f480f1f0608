"""`classroom doctor`: check a deployment and print a checklist, with a fix for each failure.

Each check talks to the real thing (the certificate file, the public URL's /readyz, a TURN
Allocate with the REST credentials the server would hand out, a bind on the media ports,
Redis PING and TIME, the library's filesystem, the installed aiortc/PyAV) and ends
``ok``, ``warn`` (works, but look), ``fail`` (with a one-line fix) or ``skip`` (with the
reason, e.g. the flag that enables it). The exit status is 1 when any check failed.

    classroom doctor --public-url https://classroom.school.example \\
        --tls-cert /etc/ssl/classroom/fullchain.pem --tls-key /etc/ssl/classroom/privkey.pem \\
        --turn-url turn:turn.school.example:3478?transport=udp --turn-secret ... \\
        --rtc-ports 40000-40999 --redis-url redis://10.0.0.9:6379/0 \\
        --library /var/lib/classroom/library --library-quota-gb 200
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}

CHECK_TIMEOUT = 8.0
"""Seconds one check may take (a TURN server that drops UDP, a firewalled URL)."""
CERT_WARN_DAYS = 14  # the alert ClassroomTlsCertificateExpiring uses the same thresholds
CERT_FAIL_DAYS = 3
SKEW_WARN_SECONDS = 0.5
SKEW_FAIL_SECONDS = 2.0
"""Beyond ~2 s, TURN credentials and tokens minted on one node look early or late on
another, and glass-to-glass figures drift."""
DISK_FREE_FAIL_BYTES = 1_000_000_000
DISK_FREE_WARN_RATIO = 0.10
QUOTA_WARN_RATIO = 0.9
DISTRIBUTION = "shared-classroom"


@dataclass
class Result:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Options:
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str | None = None
    rtc_ports: tuple[int, int] | None = None
    rtc_host: str = "0.0.0.0"
    redis_url: str | None = None
    library: Path | None = None
    library_quota_gb: float | None = None
    ca_file: Path | None = None
    """A private CA to trust for --public-url and turns: (else the system's)."""
    timeout: float = CHECK_TIMEOUT


# ---- versions ---------------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:4])


def _satisfies(version: str, spec: str) -> bool:
    """``version`` within ``spec`` (``>=1.9,<2``: the operators pyproject uses)."""
    have = _version_tuple(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op, want_text = re.fullmatch(r"(==|!=|>=|<=|>|<|~=)\s*(\S+)", clause).groups()
        want = _version_tuple(want_text)
        width = max(len(have), len(want))
        h, w = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {"==": h == w, "!=": h != w, ">=": h >= w, "<=": h <= w, ">": h > w,
              "<": h < w,
              "~=": h >= w and h[:len(want) - 1] == w[:len(want) - 1]}[op]
        if not ok:
            return False
    return True


def supported_ranges() -> dict[str, str]:
    """aiortc's and av's version ranges: from pyproject.toml beside the code (a checkout),
    else from the installed package's metadata."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    lines: list[str] = []
    if pyproject.exists():
        lines = re.findall(r'^\s*"([^"]+)"', pyproject.read_text(), re.M)
    else:
        try:
            lines = metadata.requires(DISTRIBUTION) or []
        except metadata.PackageNotFoundError:
            pass
    ranges = {}
    for line in lines:
        match = re.match(r"\s*(aiortc|av)\s*((?:[<>=!~]=?\s*[\w.*]+\s*,?\s*)*)\s*(?:;|$)", line)
        if match:
            ranges[match[1]] = match[2].replace(" ", "")
    return ranges


def check_versions(installed: dict[str, str] | None = None,
                   ranges: dict[str, str] | None = None) -> Result:
    ranges = supported_ranges() if ranges is None else ranges
    if installed is None:
        installed = {}
        for name in ("aiortc", "av"):
            try:
                installed[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed[name] = ""
    shown = ", ".join(f"{n} {installed.get(n) or 'missing'} (supported {ranges.get(n, 'any')})"
                      for n in ("aiortc", "av"))
    bad = [n for n in ("aiortc", "av")
           if not installed.get(n) or not _satisfies(installed[n], ranges.get(n, ""))]
    if bad:
        pins = " ".join(f"'{n}{ranges.get(n, '')}'" for n in bad)
        return Result("aiortc/PyAV versions", FAIL, shown,
                      f"pip install {pins} into the server's venv (scripts/serve does), "
                      "then restart the service")
    return Result("aiortc/PyAV versions", OK, shown)


# ---- TLS certificate ----------------------------------------------------------------------
def check_tls(cert: Path | None, key: Path | None, public_url: str | None = None,
              now: float | None = None) -> Result:
    name = "TLS certificate"
    if cert is None:
        return Result(name, SKIP, "no --tls-cert (TLS at a proxy: run doctor there with its "
                                  "certificate, or check --public-url)")
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(Path(cert).read_bytes())
    except (OSError, ValueError) as exc:
        return Result(name, FAIL, f"cannot read {cert}: {exc}",
                      "give --tls-cert the PEM certificate chain (fullchain.pem), readable "
                      "by the service user")
    leaf = chain[0]
    now = time.time() if now is None else now
    days = (leaf.not_valid_after_utc.timestamp() - now) / 86400
    subject = leaf.subject.rfc4514_string()
    notes = [f"{subject}, expires {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
             f"({days:.1f} days)"]
    if key is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError, ValueError) as exc:
            return Result(name, FAIL, f"{notes[0]}; key {key} unusable: {exc}",
                          "--tls-key must be the unencrypted PEM key of this certificate "
                          "(privkey.pem of the same issuance)")
    host = urlsplit(public_url).hostname if public_url else None
    if host and not _cert_covers(leaf, host):
        return Result(name, FAIL, f"{notes[0]}; does not name {host}",
                      f"get a certificate whose subjectAltName includes {host} (e.g. "
                      f"certbot certonly -d {host})")
    if days <= 0:
        return Result(name, FAIL, f"{notes[0]}: EXPIRED",
                      "renew it (certbot renew), then systemctl reload classroom (SIGHUP "
                      "loads it; live lessons keep going)")
    if days < CERT_FAIL_DAYS:
        return Result(name, FAIL, notes[0],
                      "renew now (certbot renew) and systemctl reload classroom")
    if days < CERT_WARN_DAYS:
        return Result(name, WARN, notes[0],
                      "renewal is due: check certbot's timer, then systemctl reload classroom")
    return Result(name, OK, notes[0])


def _cert_covers(cert: Any, host: str) -> bool:
    import ipaddress

    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in sans.get_values_for_type(x509.IPAddress)
    for name in sans.get_values_for_type(x509.DNSName):
        name = name.lower()
        if name == host.lower() or (name.startswith("*.") and
                                    host.lower().split(".", 1)[-1] == name[2:]):
            return True
    return False


def _client_ssl(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(str(ca_file))
    return context


# ---- public URL ---------------------------------------------------------------------------
async def check_public_url(url: str | None, ca_file: Path | None = None,
                           timeout: float = CHECK_TIMEOUT) -> tuple[Result, float | None]:
    """The URL's /readyz answers 200; also returns the clock offset its Date header shows
    (server minus local, seconds) for the clock check."""
    name = "public URL"
    if not url:
        return Result(name, SKIP, "no --public-url (or CLASSROOM_PUBLIC_URL)"), None
    import aiohttp

    target = url.rstrip("/") + "/readyz"
    secure = urlsplit(url).scheme == "https"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            sent = time.time()
            async with http.get(target, ssl=_client_ssl(ca_file) if secure else False) as resp:
                got = time.time()
                body = await resp.text()
                date = resp.headers.get("Date")
    except aiohttp.ClientConnectorCertificateError as exc:
        return Result(name, FAIL, f"{target}: certificate not trusted ({exc.certificate_error})",
                      "serve the full chain (fullchain.pem, not cert.pem) from a public CA, or "
                      "give doctor --ca-file for a private CA"), None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Result(name, FAIL, f"{target}: {type(exc).__name__}: {exc}".rstrip(": "),
                      "start the service (systemctl status classroom), check DNS for the host "
                      "and that the firewall/proxy forwards the port to the node"), None
    offset = None
    if date:
        try:
            offset = email.utils.parsedate_to_datetime(date).timestamp() - (sent + got) / 2
        except (TypeError, ValueError):
            offset = None
    if resp.status != 200:
        return Result(name, FAIL, f"{target}: HTTP {resp.status} {body[:120]}",
                      "the node is up but not ready: see the store check (Redis) and "
                      "journalctl -u classroom"), offset
    return Result(name, OK, f"{target}: 200 {body[:80]}"), offset


# ---- TURN -------------------------------------------------------------------------------------
_TURN = re.compile(r"(?P<scheme>turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)"
                   r"(?::(?P<port>\d+))?(?:\?transport=(?P<transport>udp|tcp))?")


async def _turn_allocate(url: str, secret: str, ca_file: Path | None,
                         timeout: float) -> str:
    """Allocate a relay on ``url`` with REST credentials from ``secret``; the relayed
    address. Raises on refusal or silence."""
    from aioice.turn import create_turn_endpoint

    from .turn import credentials

    match = _TURN.fullmatch(url)
    if match is None:
        raise ValueError(f"not a turn: URL: {url!r}")
    host = match["host"].strip("[]")
    tls = match["scheme"] == "turns"
    port = int(match["port"] or (5349 if tls else 3478))
    transport = "tcp" if tls else (match["transport"] or "udp")
    username, password = credentials(secret, "doctor", 300)
    context: ssl.SSLContext | None = None
    if tls:
        context = _client_ssl(ca_file)
    loop = asyncio.get_running_loop()
    address = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0][4][:2]
    turn, protocol = await asyncio.wait_for(create_turn_endpoint(
        _Closed, address, username, password, lifetime=60, ssl=context,
        transport=transport), timeout)
    relayed = turn.get_extra_info("sockname")  # aioice: the relayed address
    turn.close()  # deletes the allocation (a Refresh with lifetime 0), then connection_lost
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(protocol.closed.wait(), 2)
    return f"{relayed[0]}:{relayed[1]}" if relayed else "?"


class _Closed(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.closed = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def check_turn(urls: list[str], secret: str | None, ca_file: Path | None = None,
                     timeout: float = CHECK_TIMEOUT) -> list[Result]:
    if not urls:
        return [Result("TURN", SKIP, "no --turn-url (classrooms behind UDP-blocking firewalls "
                                     "will not connect)")]
    if not secret:
        return [Result(f"TURN {u}", FAIL, "no --turn-secret",
                       "give --turn-secret (or CLASSROOM_TURN_SECRET): coturn's "
                       "static-auth-secret") for u in urls]
    results = []
    for url in urls:
        name = f"TURN {url}"
        try:
            relayed = await _turn_allocate(url, secret, ca_file, timeout)
        except TimeoutError:
            results.append(Result(name, FAIL, f"no answer in {timeout:g} s",
                                  "start coturn (systemctl status coturn) and open its port "
                                  "(UDP and TCP 3478, TCP 5349/443 for turns:) in the firewall"))
        except ConnectionRefusedError as exc:
            results.append(Result(name, FAIL, f"connection refused: {exc}",
                                  "coturn is not listening there: check listening-port / "
                                  "tls-listening-port in /etc/turnserver.conf"))
        except Exception as exc:  # aioice TransactionFailed: 401, 441, 403...
            text = str(exc) or type(exc).__name__
            if "401" in text or "Unauthorized" in text or "441" in text:
                fix = ("--turn-secret must equal coturn's static-auth-secret (use-auth-secret "
                       "on), and the clocks of this node and coturn must agree")
            elif isinstance(exc, ssl.SSLError):
                fix = ("coturn's cert/pkey: a certificate the clients trust, for this host "
                       "name")
            else:
                fix = "see coturn's log (log-file in /etc/turnserver.conf)"
            results.append(Result(name, FAIL, f"allocation refused: {text}", fix))
        else:
            results.append(Result(name, OK, f"allocated relay {relayed} with REST credentials"))
    return results


# ---- media ports ------------------------------------------------------------------------------
def check_rtc_ports(ports: tuple[int, int] | None, host: str = "0.0.0.0") -> Result:
    name = "media ports"
    if ports is None:
        return Result(name, SKIP, "no --rtc-ports (ephemeral ports: the firewall must allow "
                                  "UDP 32768-60999 to the node)")
    low, high = ports
    free, busy = 0, []
    for port in range(low, high + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                busy.append(port)
            else:
                free += 1
    size = high - low + 1
    detail = f"UDP {low}-{high} on {host}: {free} of {size} free"
    if free == 0:
        return Result(name, FAIL, detail + " (every port bound by another process)",
                      f"ss -ulpn 'sport >= :{low} and sport <= :{high}' shows who holds them; "
                      "stop it or give --rtc-ports another range")
    if busy:
        return Result(name, WARN, detail + f"; {len(busy)} in use (e.g. {busy[0]}): a running "
                                           "node's media, or another program",
                      "each peer connection needs one port: make the range at least as "
                      "large as the classrooms plus teachers of a node")
    return Result(name, OK, detail + "; open them in the firewall (UDP, inbound)")


# ---- Redis and clocks ---------------------------------------------------------------------------
async def check_redis(url: str | None,
                      timeout: float = CHECK_TIMEOUT) -> tuple[Result, float | None]:
    """PING; also returns Redis's clock minus ours (TIME), for the clock check."""
    name = "Redis"
    if not url:
        return Result(name, SKIP, "no --redis-url (one node with the in-memory store)"), None
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        pong = await asyncio.wait_for(client.ping(), timeout)
        sent = time.time()
        seconds, micros = await asyncio.wait_for(client.time(), timeout)
        got = time.time()
    except Exception as exc:
        return Result(name, FAIL, f"{_redacted(url)}: {type(exc).__name__}: {exc}",
                      "start redis-server (systemctl status redis-server), check bind/"
                      "protected-mode and requirepass against the URL's password"), None
    finally:
        await client.aclose()
    offset = seconds + micros / 1e6 - (sent + got) / 2
    return Result(name, OK if pong else FAIL, f"{_redacted(url)}: PONG"), offset


def _redacted(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def check_clock(offsets: dict[str, float | None]) -> Result:
    """This node's clock against the shared Redis (TIME: every node compares to the same
    clock) and the public URL's Date header (1 s resolution)."""
    name = "clock skew"
    known = {k: v for k, v in offsets.items() if v is not None}
    if not known:
        return Result(name, SKIP, "nothing to compare with: give --redis-url (nodes share it) "
                                  "or --public-url (its Date header)")
    # a Date header has whole seconds: up to 1 s of offset is its rounding
    worst_name, worst = max(known.items(),
                            key=lambda kv: abs(kv[1]) - (1.0 if kv[0] == "public URL" else 0))
    slack = 1.0 if worst_name == "public URL" else 0.0
    shown = ", ".join(f"{k} {v:+.3f} s" for k, v in known.items())
    if abs(worst) - slack > SKEW_FAIL_SECONDS:
        return Result(name, FAIL, f"this machine vs {shown}",
                      "run NTP on every node, Redis and coturn host (apt-get install chrony, "
                      "or timedatectl set-ntp true)")
    if abs(worst) - slack > SKEW_WARN_SECONDS:
        return Result(name, WARN, f"this machine vs {shown}",
                      "check NTP (chronyc tracking) on this node and the other machines")
    return Result(name, OK, f"this machine vs {shown}")


# ---- library ----------------------------------------------------------------------
def check_library(library: Path | None, quota_gb: float | None) -> Result:
    name = "library disk"
    if library is None:
        return Result(name, SKIP, "no --library")
    from .ops_metrics import dir_size

    library = Path(library)
    if not library.is_dir():
        return Result(name, FAIL, f"{library} does not exist",
                      f"mkdir -p {library} && chown classroom: {library} (or fix --library)")
    try:
        with tempfile.NamedTemporaryFile(dir=library, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Result(name, FAIL, f"{library} is not writable: {exc.strerror or exc}",
                      f"chown -R classroom: {library} (the service user writes recordings)")
    usage = shutil.disk_usage(library)
    used = dir_size(library)
    detail = (f"{library}: {used / 1e9:.2f} GB used, {usage.free / 1e9:.1f} GB free of "
              f"{usage.total / 1e9:.1f} GB")
    if quota_gb:
        quota = quota_gb * 1e9
        detail += f", quota {quota_gb:g} GB ({used / quota:.0%} used)"
        if quota > used + usage.free:
            return Result(name, FAIL, detail + ": the disk fills before the quota applies",
                          f"lower --library-quota-gb to at most "
                          f"{(used + usage.free) * 0.9 / 1e9:.0f} or give the library a "
                          "larger disk")
    if usage.free < DISK_FREE_FAIL_BYTES:
        return Result(name, FAIL, detail,
                      "free space on that filesystem, or set --library-quota-gb / "
                      "--retention-days so old recordings are deleted")
    if quota_gb and used > QUOTA_WARN_RATIO * quota_gb * 1e9:
        return Result(name, WARN, detail,
                      "near the quota: the oldest recordings are being deleted; raise "
                      "--library-quota-gb if they should be kept")
    if usage.free < DISK_FREE_WARN_RATIO * usage.total:
        return Result(name, WARN, detail, "under 10 % free: set a quota or a retention")
    return Result(name, OK, detail)


# ---- all of it --------------------------------------------------------------------
async def run_checks(opts: Options) -> list[Result]:
    """Every check; the independent network ones concurrently."""
    to = opts.timeout
    url_task = asyncio.ensure_future(check_public_url(opts.public_url, opts.ca_file, to))
    redis_task = asyncio.ensure_future(check_redis(opts.redis_url, to))
    turn_task = asyncio.ensure_future(check_turn(opts.turn_urls, opts.turn_secret,
                                                 opts.ca_file, to))
    blocking: list[tuple[Callable[..., Result], tuple]] = [
        (check_tls, (opts.tls_cert, opts.tls_key, opts.public_url)),
        (check_rtc_ports, (opts.rtc_ports, opts.rtc_host)),
        (check_library, (opts.library, opts.library_quota_gb)),
        (check_versions, ()),
    ]
    local = [await asyncio.to_thread(fn, *args) for fn, args in blocking]
    url_result, date_offset = await url_task
    redis_result, redis_offset = await redis_task
    turn_results = await turn_task
    clock = check_clock({"Redis": redis_offset, "public URL": date_offset})
    tls, ports, library, versions = local
    return [tls, url_result, *turn_results, ports, redis_result, clock, library, versions]


def render(results: list[Result]) -> str:
    lines = []
    for r in results:
        lines.append(f"{MARKS[r.status]} {r.name}: {r.detail}")
        if r.fix and r.status in (FAIL, WARN):
            lines.append(f"       fix: {r.fix}")
    failed = sum(r.status == FAIL for r in results)
    warned = sum(r.status == WARN for r in results)
    lines.append(f"{failed} failed, {warned} warnings, "
                 f"{sum(r.status == OK for r in results)} ok, "
                 f"{sum(r.status == SKIP for r in results)} skipped")
    return "\n".join(lines)


def add_parser(sub: Any, parse_ports: Callable[[str], tuple[int, int]]) -> None:
    doctor = sub.add_parser("doctor", help="check a deployment; a checklist with fixes")
    doctor.add_argument("--public-url", default=os.environ.get("CLASSROOM_PUBLIC_URL"),
                        help="fetch its /readyz (or CLASSROOM_PUBLIC_URL)")
    doctor.add_argument("--tls-cert", type=Path, default=None, metavar="PATH")
    doctor.add_argument("--tls-key", type=Path, default=None, metavar="PATH")
    doctor.add_argument("--ca-file", type=Path, default=None, metavar="PATH",
                        help="a private CA to trust for --public-url and turns:")
    doctor.add_argument("--turn-url", action="append", default=[], metavar="URL",
                        help="as for serve (repeatable): each gets a real TURN Allocate")
    doctor.add_argument("--turn-secret", default=os.environ.get("CLASSROOM_TURN_SECRET"),
                        metavar="S")
    doctor.add_argument("--rtc-ports", type=parse_ports, default=None, metavar="LOW-HIGH")
    doctor.add_argument("--rtc-host", default="0.0.0.0",
                        help="address the media ports are bound on (bind test)")
    doctor.add_argument("--redis-url", default=os.environ.get("CLASSROOM_REDIS_URL"))
    doctor.add_argument("--library", type=Path, default=None)
    doctor.add_argument("--library-quota-gb", type=float,
                        # a string default: argparse converts it only when doctor runs,
                        # so a bad value never breaks `classroom serve`'s own message
                        default=os.environ.get("CLASSROOM_LIBRARY_QUOTA_GB") or None)
    doctor.add_argument("--timeout", type=float, default=CHECK_TIMEOUT,
                        help="seconds per network check")
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: Any) -> int:
    opts = Options(tls_cert=args.tls_cert, tls_key=args.tls_key, public_url=args.public_url,
                   turn_urls=list(args.turn_url), turn_secret=args.turn_secret,
                   rtc_ports=args.rtc_ports, rtc_host=args.rtc_host, redis_url=args.redis_url,
                   library=args.library, library_quota_gb=args.library_quota_gb,
                   ca_file=args.ca_file, timeout=args.timeout)
    results = asyncio.run(run_checks(opts))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, ensure_ascii=False))
    else:
        print(render(results))
    return 1 if any(r.status == FAIL for r in results) else 0
