"""The `classroom` command: `serve` runs a node, `token` mints a signed token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from media_relay.port_range import parse_port_range

from .auth import DEFAULT_TTL_SECONDS, Role, mint_token, new_secret
from .config import Config, parse_ice_server, positive_number
from .forwarded import parse_networks
from .http_guard import run_guarded
from .links import (
    ALL_INTERFACES,
    ROLE_PAGES,
    check_public_url,
    interface_addresses,
    is_secure_origin,
    listen_base,
    page_link,
)
from .tls import CertReloader, TlsError, load_context
from .turn import settings_from_args

DEMO_LESSON = "demo"
SECRET_FILE = ".secret"


def resolve_secret(explicit: str | None, library: Path) -> str:
    """--secret, else $CLASSROOM_SECRET, else a secret kept in the library folder.

    Keeping a generated secret beside the library lets `classroom token` mint tokens that
    a running `classroom serve` on the same folder accepts, with nothing to configure.
    """
    if explicit:
        return explicit
    env = os.environ.get("CLASSROOM_SECRET")
    if env:
        return env
    path = library / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    library.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"want 0 or more, got {value}")
    return value


def _positive(text: str) -> float:
    try:
        return positive_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rtc_ports(text: str) -> tuple[int, int]:
    try:
        return parse_port_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(text: str) -> int | None:
    from .workers import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_slot(text: str) -> tuple[int, int]:
    from .workers import parse_slot

    try:
        return parse_slot(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timezone(text: str) -> str:
    """An IANA zone name zoneinfo knows ("Asia/Shanghai"), else a clear argparse error."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise argparse.ArgumentTypeError(f"unknown time zone {text!r}") from None
    return text


def _recording_options(args: argparse.Namespace) -> dict:
    """The recording flags given on the command line (the rest come from the environment)."""
    options: dict = {}
    if args.no_recording:
        options["recording"] = False
    if args.retention_days is not None:
        options["retention_days"] = args.retention_days
    if args.library_quota_gb is not None:
        options["library_quota_gb"] = args.library_quota_gb
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run signaling, relay and pages in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--redis-url", default=os.environ.get("CLASSROOM_REDIS_URL"))
    serve.add_argument("--library", type=Path, default=Path.cwd() / "library")
    serve.add_argument("--secret", default=None, help="HS256 key (or CLASSROOM_SECRET)")
    serve.add_argument("--ice-server", action="append", default=[], metavar="URL",
                       help="stun:host:port or turn:user:pass@host:port (repeatable)")
    serve.add_argument("--turn-url", action="append", default=[], metavar="URL",
                       help="coturn for blocked networks, e.g. turn:HOST:3478?transport=udp, "
                            "turn:HOST:3478?transport=tcp, turns:HOST:443?transport=tcp "
                            "(repeatable); each peer gets time-limited credentials")
    serve.add_argument("--turn-secret", default=None, metavar="S",
                       help="coturn's static-auth-secret (or CLASSROOM_TURN_SECRET; never "
                            "sent to browsers or logged)")
    serve.add_argument("--turn-ttl", type=int, default=None, metavar="SECONDS",
                       help="lifetime of the TURN credentials in each welcome (default 12 h)")
    serve.add_argument("--video-bitrate", type=int, default=1_000_000)
    serve.add_argument("--rtc-ports", type=_rtc_ports, default=None, metavar="LOW-HIGH",
                       help="UDP ports for media (one per peer connection), e.g. "
                            "40000-40999, so a firewall can be opened; default: ephemeral")
    serve.add_argument("--public-url", default=os.environ.get("CLASSROOM_PUBLIC_URL"),
                       help="base URL of the printed links, e.g. the TLS proxy's "
                            "https://classroom.school.example (or CLASSROOM_PUBLIC_URL; "
                            "default http(s)://HOST:PORT, the LAN address for 0.0.0.0)")
    serve.add_argument("--max-subscribers", type=_non_negative_int, default=None,
                       metavar="N",
                       help="placement: with N classrooms here, a new classroom's socket is "
                            "sent to the least-loaded live node with room (a `redirect`); "
                            "none has room: accepted anyway (default: no limit)")
    serve.add_argument("--max-cpu", type=_positive, default=None, metavar="F",
                       help="placement: over F cores used by this node (0.9: 90%% of the one "
                            "core its event loop runs on), new classrooms go elsewhere as "
                            "for --max-subscribers (default: no limit)")
    serve.add_argument("--tls-cert", type=Path, default=None, metavar="PATH",
                       help="PEM certificate (chain): serve https and wss on --port; "
                            "SIGHUP reloads it")
    serve.add_argument("--tls-key", type=Path, default=None, metavar="PATH",
                       help="PEM private key of --tls-cert")
    serve.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                       help="reverse proxy whose X-Forwarded-* headers are believed "
                            "(repeatable; loopback always is); exempt from the "
                            "per-address connection limit")
    serve.add_argument("--max-connections-per-address", type=_non_negative_int, default=None,
                       metavar="N",
                       help="open HTTP/WebSocket connections from one address (default 2048; "
                            "0: no limit)")
    serve.add_argument("--session-token-ttl", type=_positive, default=None, metavar="SECONDS",
                       help="life of the session token an open page renews itself with "
                            "(default 3600)")
    serve.add_argument("--timezone", type=_timezone,
                       default=os.environ.get("CLASSROOM_TZ", "Asia/Shanghai"),
                       metavar="ZONE", help="the district's time zone for timetables "
                       "(or CLASSROOM_TZ; default Asia/Shanghai)")
    serve.add_argument("--overrun-minutes", type=_non_negative_int, default=10, metavar="N",
                       help="a timetable lesson ends by itself N minutes after its end "
                            "(拖堂; a warning 5 minutes before; default 10)")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--workers", type=_workers, default=os.environ.get("CLASSROOM_WORKERS",
                                                                          "auto"),
                       metavar="N|auto",
                       help="processes on this machine, nodes of one cascade on one port "
                            "(or CLASSROOM_WORKERS); auto: one per core with --redis-url, "
                            "else 1 on the embedded store; N > 1 without --redis-url starts a "
                            "private redis-server in the library folder (docs/cascade.md)")
    serve.add_argument("--as-worker", type=_worker_slot, default=None, help=argparse.SUPPRESS)
    serve.add_argument("--worker-ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument("--no-demo", action="store_true", help="do not print demo links")
    serve.add_argument("--retention-days", type=_positive, default=None, metavar="DAYS",
                       help="delete finished recordings older than this "
                            "(default $CLASSROOM_RETENTION_DAYS, else keep)")
    serve.add_argument("--library-quota-gb", type=_positive, default=None, metavar="GB",
                       help="delete the oldest finished recordings over this size "
                            "(default $CLASSROOM_LIBRARY_QUOTA_GB, else no quota)")
    serve.add_argument("--no-recording", action="store_true", default=None,
                       help="do not record lessons (default: record unless "
                            "CLASSROOM_RECORDING=0)")

    token = sub.add_parser("token", help="print a signed JWT")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--lesson", required=True)
    token.add_argument("--school", default="")
    token.add_argument("--name", default="")
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS)
    token.add_argument("--library", type=Path, default=Path.cwd() / "library")
    token.add_argument("--secret", default=None)
    token.add_argument("--link", action="store_true",
                       help="print the whole link (public URL + page + #token=...)")
    token.add_argument("--public-url", default=os.environ.get("CLASSROOM_PUBLIC_URL"),
                       help="base URL of --link (or CLASSROOM_PUBLIC_URL; "
                            "default http://127.0.0.1:8080)")
    from recording.cli import add_parser as add_library_parser

    add_library_parser(sub)
    from .doctor import add_parser as add_doctor_parser

    add_doctor_parser(sub, _rtc_ports)
    return parser


def _demo_links(base: str, secret: str) -> str:
    def link(path: str, **kw: str) -> str:
        return f"{base}{path}#token={mint_token(secret, ttl=12 * 3600, **kw)}"

    return "\n".join(
        [
            "",
            "  Shared classroom is running. Demo lesson links (valid 12 h):",
            "  teacher console : " + link(f"/teach/{DEMO_LESSON}", role="teacher",
                                         lesson=DEMO_LESSON, name="王老师", school="城区一小"),
            "  classroom 1 (TV): " + link(f"/class/{DEMO_LESSON}", role="classroom",
                                         lesson=DEMO_LESSON, name="一年级1班",
                                         school="山村小学"),
            "  classroom 2 (TV): " + link(f"/class/{DEMO_LESSON}", role="classroom",
                                         lesson=DEMO_LESSON, name="教学点A",
                                         school="河口教学点"),
            "  add ?lang=en before the # for English.",
            f"  metrics: {base}/metrics   health: {base}/healthz",
            "",
        ]
    )


def _tls(args: argparse.Namespace) -> CertReloader | None:
    """The TLS context (with its SIGHUP reloader) from --tls-cert/--tls-key, or None."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise TlsError("--tls-cert and --tls-key go together")
    if args.tls_cert is None:
        return None
    cert, key = args.tls_cert.resolve(), args.tls_key.resolve()
    return CertReloader(load_context(cert, key), cert, key)


def _listening(host: str, port: int, tls: bool, base: str) -> str:
    """Where the server listens, and the base URL other machines use."""
    scheme = "https" if tls else "http"
    lines = ["", f"  listening on {scheme}://{host or '0.0.0.0'}:{port}"]
    if host in ALL_INTERFACES:
        shown = ", ".join(f"{a} ({n})" for n, a in interface_addresses().items())
        lines[-1] += f" (all interfaces: {shown})" if shown else " (all interfaces)"
    lines.append(f"  links use       {base}")
    if not is_secure_origin(base):
        lines.append("  note: browsers open cameras only on https pages (or 127.0.0.1): give "
                     "--tls-cert/--tls-key, or a TLS proxy and --public-url https://...")
    return "\n".join(lines)


def _lesson_links(base: str, library: Path) -> str:
    """--no-demo: the page links of any lesson and how to mint their tokens."""
    return "\n".join([
        f"  teacher console : {base}/teach/{{lesson}}#token=<teacher token>",
        f"  classroom (TV)  : {base}/class/{{lesson}}#token=<classroom token>",
        f"  student answers : {base}/answer/{{lesson}}#token=<student token>",
        "  a whole link    : classroom token --role teacher|classroom|student --lesson LESSON "
        f"--link --public-url {base} --library {library}",
        "",
    ])


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import build_app
    from .logs import configure_logging

    configure_logging(args.log_level)
    library = args.library.resolve()
    library.mkdir(parents=True, exist_ok=True)
    try:
        ice = [parse_ice_server(u) for u in args.ice_server]
        turn = settings_from_args(args.turn_url, args.turn_secret, args.turn_ttl,
                                  os.environ.get("CLASSROOM_TURN_SECRET"))
    except ValueError as exc:
        print(f"classroom: {exc}", file=sys.stderr)
        return 2
    try:
        config = Config(
            host=args.host,
            port=args.port,
            secret=resolve_secret(args.secret, library),
            redis_url=args.redis_url,
            library=library,
            ice_servers=ice,
            turn=turn,
            video_bitrate=args.video_bitrate,
            rtc_ports=args.rtc_ports,
            timezone=args.timezone,
            overrun_minutes=args.overrun_minutes,
            **_recording_options(args),
        )
    except ValueError as exc:  # a bad CLASSROOM_RETENTION_DAYS / _LIBRARY_QUOTA_GB
        print(f"classroom: {exc}", file=sys.stderr)
        return 2
    try:
        tls = _tls(args)
        base = (check_public_url(args.public_url) if args.public_url
                else listen_base(args.host, args.port, tls is not None))
        config.trusted_proxies = [str(n) for n in parse_networks(args.trusted_proxy)]
        config.link_url = listen_base(args.host, args.port, tls is not None)
        config.public_url = base  # the node record's http_url: where redirects send pages
        config.max_subscribers, config.max_cpu = args.max_subscribers, args.max_cpu
    except ValueError as exc:  # TlsError too: one line, no traceback
        print(f"classroom: {exc}", file=sys.stderr)
        return 2
    if args.session_token_ttl is not None:
        config.session_token_ttl = args.session_token_ttl
    if args.max_connections_per_address is not None:
        config.max_connections_per_address = args.max_connections_per_address
    from . import workers

    count, why = workers.resolve(args.workers, args.redis_url, library)
    if args.as_worker is None and why:
        logging.getLogger("signaling.cli").info(why)
    if args.as_worker is None and count > 1:
        return _supervise(args, config, tls is not None, base, count)
    private = None  # a worker's own address: its link_url and metrics (signaling/workers.py)
    if args.as_worker is not None:
        config.node_id = workers.node_id(args.port, args.as_worker[0])
        private = workers.private_socket()
        config.link_url = f"http://127.0.0.1:{private.getsockname()[1]}"
        workers.tag_logs(worker=f"w{args.as_worker[0]}")
    app = build_app(config)

    async def announce(_app: web.Application) -> None:
        if tls is not None:
            tls.install(asyncio.get_running_loop())
        if args.as_worker is not None:
            return  # the supervisor prints the links once
        print(_listening(args.host, args.port, tls is not None, base), flush=True)
        if args.no_demo:
            print(_lesson_links(base, args.library.resolve()), flush=True)
        else:
            print(_demo_links(base, config.secret), flush=True)

    def ready() -> None:
        workers.report_ready(args.worker_ready_fd, {
            "pid": os.getpid(), "node": config.node_id, "link_url": config.link_url})

    app.on_startup.append(announce)
    run_guarded(app, host=args.host, port=args.port, ssl_context=tls.context if tls else None,
                max_per_address=config.max_connections_per_address,
                exempt=config.trusted_proxies, shutdown_timeout=5,
                reuse_port=private is not None, extra_sockets=[private] if private else [],
                on_started=ready if private is not None else None)
    return 0


def _supervise(args: argparse.Namespace, config: Config, tls: bool, base: str,
               count: int) -> int:
    """``--workers N``: start N worker processes on one port and watch them."""
    from .workers import TARGETS_FILE, Supervisor, WorkersError

    def announce(up: list[dict]) -> None:
        print(_listening(args.host, args.port, tls, base), flush=True)
        print(f"  workers         {len(up)}, each with its own address (link and /metrics): "
              + ", ".join(f"{w.get('node')} {w.get('link_url')}" for w in up), flush=True)
        if args.no_demo:
            print(_lesson_links(base, config.library), flush=True)
        else:  # /metrics on the shared port is any worker's: name each worker's instead
            print(_demo_links(base, config.secret).replace(
                f"metrics: {base}/metrics", f"metrics: each worker's address above, listed in "
                f"{config.library / TARGETS_FILE}"), flush=True)

    supervisor = Supervisor(count=count, argv=args.argv, library=config.library,
                            host=args.host, port=args.port, redis_url=args.redis_url,
                            rtc_ports=args.rtc_ports, announce=announce)
    try:
        supervisor.prepare()
    except WorkersError as exc:
        print(f"classroom: {exc}", file=sys.stderr)
        return 2
    return supervisor.run()


def token(args: argparse.Namespace) -> int:
    try:
        base = check_public_url(args.public_url or "http://127.0.0.1:8080")
        if args.link and args.role not in ROLE_PAGES:
            page_link(base, args.role, args.lesson, "")  # raises: no page for this role
        secret = resolve_secret(args.secret, args.library.resolve())
        minted = mint_token(secret, role=args.role, lesson=args.lesson, school=args.school,
                            name=args.name, ttl=args.ttl)
        print(page_link(base, args.role, args.lesson, minted) if args.link else minted)
    except ValueError as exc:
        print(f"classroom token: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # --workers starts it again
    if args.command == "library":
        from recording.cli import run as library

        return library(args)
    if args.command == "doctor":
        from .doctor import run as doctor

        return doctor(args)
    return {"serve": serve, "token": token}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
