"""``classroom serve --workers N``: N processes on one machine, nodes of one cascade.

One Python process relays with about one core whatever the machine has, so a machine with
more cores runs one **worker** per core. Each worker is a whole node (docs/cascade.md): its
own node id, relay and heartbeat, on one shared store; a lesson whose teacher publishes to
worker 1 reaches the classrooms that landed on worker 2 over the cascade link, as between
machines.

* **One public port.** Every worker binds ``--host``/``--port`` with ``SO_REUSEPORT``: the
  kernel spreads new connections over the workers (by a hash of the connection's
  addresses). Each worker also listens on its own **private address**, ``127.0.0.1`` and an
  ephemeral port, plain HTTP: it is the worker's ``link_url`` in its node record (a cascade
  link must reach that very worker, which the public port cannot promise) and where
  Prometheus scrapes it (``/metrics``; the supervisor writes the addresses to
  ``<library>/prometheus-workers.json``, a Prometheus ``file_sd`` file).
* **Node ids** are ``<host>-<port>-w<i>``: stable across a worker's restarts (its
  recordings, its metrics' labels and its origin claims stay its own) and distinct for two
  servers of one machine on one Redis.
* **The store.** Workers share one Redis: ``--redis-url``, or else the supervisor's own
  private ``redis-server`` (:class:`PrivateRedis`: a unix socket in ``<library>/redis/``,
  no TCP port, mode 0700, its append-only file in the same folder so a restart resumes as
  the embedded store does). No redis-server installed: workers need Redis, said plainly.
* **Media ports.** ``--rtc-ports LOW-HIGH`` is split into one contiguous share per worker.
* **The library folder** and its ``.secret`` are shared: every worker records into the
  same catalog (recording/catalog.py locks and re-reads it across processes).

The **supervisor** (the process started) starts the workers, prints the links once, restarts
a worker that dies (back-off 0.5 s doubling to 30 s while it keeps dying within a minute),
forwards SIGHUP (TLS reload) and stops everything on SIGTERM/SIGINT: the workers first (they
remove their node records), then its redis-server. Workers and redis-server also end when
the supervisor is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

AUTO = "auto"
REDIS_DIR = "redis"
"""The private redis-server's folder in the library: socket, append-only file, log."""
REDIS_SOCKET = "redis.sock"
TARGETS_FILE = "prometheus-workers.json"
"""Prometheus ``file_sd`` targets: every worker's private address, rewritten on restarts."""
RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Seconds before a dead worker is started again, by how often it died in a row."""
STABLE_AFTER = 60.0
"""A worker that ran this long before it died starts its back-off from the beginning."""
START_TIMEOUT = 60.0
"""Seconds a worker has to listen after it was started."""
STOP_TIMEOUT = 12.0
"""Seconds the workers have to stop (5 s of open requests, then closing lessons)."""
MIN_PORTS = 2
"""Fewest media ports a worker's share of --rtc-ports may hold (a classroom uses two)."""
_SUN_PATH_MAX = 107


class WorkersError(Exception):
    """A reason the workers cannot run, said in one line (exit 2)."""


# ---- how many ----------------------------------------------------------------------------
def parse_workers(text: str) -> int | None:
    """``auto`` -> None, else a whole number of at least 1 (ValueError otherwise)."""
    if text.strip().lower() == AUTO:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--workers wants a number or 'auto', got {text!r}") from None
    if value < 1:
        raise ValueError(f"--workers wants 1 or more, got {value}")
    return value


def parse_slot(text: str) -> tuple[int, int]:
    """``I/N`` (the hidden ``--as-worker``) -> (I, N) with 1 <= I <= N."""
    index, _, total = text.partition("/")
    try:
        i, n = int(index), int(total)
    except ValueError:
        raise ValueError(f"want I/N, got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"want I/N with 1 <= I <= N, got {text!r}")
    return i, n


def cores() -> int:
    """The cores this process may run on (taskset and cpusets count, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(requested: int | None, redis_url: str | None, library: Path) -> tuple[int, str]:
    """How many workers, and the one line that says why when ``auto`` chose one.

    ``auto`` is one per core on a shared store (``--redis-url``); without one it is a
    single process on the embedded store (``<library>/classroom.db``): that file holds the
    school's lessons, directory and timetables, which a private redis-server would not
    have, so more workers are only started when asked for (``--workers N``)."""
    if requested is not None:
        return requested, ""
    n = cores()
    if redis_url or n == 1:
        return n, ""
    return 1, (f"one worker: the embedded store ({library / 'classroom.db'}) belongs to one "
               f"process; --workers {n} runs one per core on a private redis-server in the "
               "library folder (or give --redis-url)")


def split_ports(ports: tuple[int, int] | None, n: int) -> list[tuple[int, int] | None]:
    """``--rtc-ports`` cut into ``n`` contiguous shares (the last takes the remainder)."""
    if ports is None:
        return [None] * n
    low, high = ports
    size = (high - low + 1) // n
    if size < MIN_PORTS:
        raise WorkersError(f"--rtc-ports {low}-{high} holds {high - low + 1} ports: too few for "
                           f"{n} workers ({MIN_PORTS} or more each)")
    return [(low + i * size, high if i == n - 1 else low + (i + 1) * size - 1)
            for i in range(n)]


def node_id(port: int, index: int) -> str:
    """A worker's node id: stable across its restarts, distinct per server of a machine."""
    return f"{os.uname().nodename}-{port}-w{index}"


# ---- the worker's side -------------------------------------------------------------------
def private_socket() -> socket.socket:
    """The worker's own listening socket on 127.0.0.1 (ephemeral port), bound before the app
    starts so that its first heartbeat already advertises it as ``link_url``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def report_ready(fd: int | None, info: dict[str, Any]) -> None:
    """Tell the supervisor this worker listens (one JSON line on the pipe it gave us)."""
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
    except OSError:
        pass  # the supervisor is gone; PR_SET_PDEATHSIG ends us
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Tag(logging.Filter):
    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def tag_logs(**fields: Any) -> None:
    """Add ``fields`` (e.g. ``worker``) to every structured log line of this process."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tag(fields))


# ---- children ----------------------------------------------------------------------------
def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class PrivateRedis:
    """The supervisor's own redis-server: a unix socket in the library folder, no TCP port.

    Persistence: an append-only file (fsync every second) in ``<library>/redis/``, so a
    restart of ``classroom serve --workers N`` finds its lessons, directory and quizzes
    again (the embedded store's promise); node records and presence expire by TTL. A lock
    file keeps a second server off the same folder (it would take the socket over)."""

    def __init__(self, library: Path, binary: str) -> None:
        self.binary = binary
        self.dir = library / REDIS_DIR
        self.socket = self.dir / REDIS_SOCKET
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self, timeout: float = 20.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if len(os.fsencode(self.socket)) > _SUN_PATH_MAX:
            raise WorkersError(f"the library folder's path is too long for a unix socket "
                               f"({self.socket}); use a shorter --library or --redis-url")
        if self._lock is None:
            lock = open(self.dir / "lock", "a+")  # noqa: SIM115 - held while we run
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                raise WorkersError(f"another classroom serve runs workers on {self.dir.parent}"
                                   " (its redis-server lock is held)") from None
            self._lock = lock
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # left by a killed server; ours, the lock says
        self._log = open(self.dir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(self.dir), "--daemonize", "no",
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--loglevel", "warning", "--databases", "1", "--protected-mode", "yes"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent, start_new_session=True,  # not stopped by a ^C
            cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkersError(f"redis-server exited with {self.proc.returncode}; see "
                                   f"{self.dir / 'redis.log'}")
            if self.ping():
                logger.info("private redis-server up", extra={
                    "pid": self.proc.pid, "socket": str(self.socket)})
                return
            time.sleep(0.05)
        self.stop()
        raise WorkersError(f"redis-server did not answer within {timeout:g} s; see "
                           f"{self.dir / 'redis.log'}")

    def ping(self) -> bool:
        """True when the socket answers PONG (not LOADING)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, 10.0)
            logger.info("private redis-server stopped", extra={"pid": self.proc.pid,
                                                                "code": self.proc.returncode})
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


@dataclass
class Worker:
    index: int
    ports: tuple[int, int] | None
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    buffer: bytes = b""
    info: dict[str, Any] | None = None
    started_at: float = 0.0
    deaths: int = 0
    restart_at: float | None = None
    starts: int = 0
    history: list[int] = field(default_factory=list)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another server holds: SO_REUSEPORT would silently share it."""
    if port == 0:
        raise WorkersError("--workers needs a fixed --port (the workers share it)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise WorkersError(f"port {port} is in use (another classroom serve?)") \
                    from None
            raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


class Supervisor:
    """Starts, watches and stops the workers (and the private redis-server, if any)."""

    def __init__(self, *, count: int, argv: Sequence[str], library: Path, host: str,
                 port: int, redis_url: str | None, rtc_ports: tuple[int, int] | None,
                 announce: Callable[[list[dict[str, Any]]], None]) -> None:
        self.count = count
        self.argv = list(argv)
        self.library = library
        self.host = host
        self.port = port
        self.redis_url = redis_url
        self.announce = announce
        self.redis: PrivateRedis | None = None
        self.workers = [Worker(i + 1, share)
                        for i, share in enumerate(split_ports(rtc_ports, count))]
        self.signal: int | None = None
        self.announced = False

    # ---- set-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that can refuse before a worker starts (WorkersError: one line)."""
        check_port_free(self.host, self.port)
        if self.redis_url is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise WorkersError(
                    f"--workers {self.count} needs Redis: the workers share their lessons "
                    "through it. Install Debian's redis-server (apt-get install "
                    "redis-server; the workers then start a private one in the library "
                    "folder), give --redis-url redis://..., or run --workers 1")
            if (self.library / "classroom.db").exists():
                logger.warning("the embedded store is not used by workers", extra={
                    "db": str(self.library / "classroom.db"),
                    "note": "lessons, directory and timetables there are not in the private "
                            "redis-server; run --workers 1 to use them"})
            self.redis = PrivateRedis(self.library, binary)

    def _command(self, worker: Worker, ready_fd: int) -> list[str]:
        rest = self.argv[self.argv.index("serve") + 1:] if "serve" in self.argv else []
        cmd = [sys.executable, "-m", "signaling.cli", "serve", *rest,
               "--as-worker", f"{worker.index}/{self.count}", "--worker-ready-fd", str(ready_fd)]
        url = self.redis.url if self.redis is not None else self.redis_url
        if url:
            cmd += ["--redis-url", url]
        if worker.ports is not None:
            cmd += ["--rtc-ports", f"{worker.ports[0]}-{worker.ports[1]}"]
        return cmd

    def _spawn(self, worker: Worker) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        try:
            worker.proc = subprocess.Popen(self._command(worker, write_fd),
                                           stdin=subprocess.DEVNULL, pass_fds=(write_fd,),
                                           preexec_fn=_die_with_parent)
        finally:
            os.close(write_fd)
        worker.ready_fd, worker.buffer, worker.info = read_fd, b"", None
        worker.started_at, worker.restart_at = time.monotonic(), None
        worker.starts += 1
        worker.history.append(worker.proc.pid)

    # ---- the loop -------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.send_signal(signal.SIGHUP)
            return
        self.signal = signum

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0, or the exit code of a worker that could not start."""
        previous = {s: signal.signal(s, self._on_signal)
                    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        code = 0
        try:
            if self.redis is not None:
                self.redis.start()
            for worker in self.workers:
                self._spawn(worker)
            code = self._watch()
        except WorkersError as exc:
            print(f"classroom: {exc}", file=sys.stderr)
            code = 2
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return code

    def _watch(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while self.signal is None:
            fds = [w.ready_fd for w in self.workers if w.ready_fd is not None]
            try:
                readable = select.select(fds, [], [], 0.2)[0] if fds else []
            except InterruptedError:
                readable = []
            if not fds:
                time.sleep(0.2)
            for worker in self.workers:
                if worker.ready_fd in readable:
                    self._note_ready(worker)
            now = time.monotonic()
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    if not self.announced:  # the first start must succeed
                        logger.error("worker could not start", extra={
                            "worker": worker.index, "code": worker.proc.returncode})
                        return worker.proc.returncode or 1
                    self._died(worker, now)
                elif worker.restart_at is not None and now >= worker.restart_at:
                    self._spawn(worker)
                    logger.info("worker restarted", extra={"worker": worker.index,
                                                           "pid": worker.proc.pid})
                elif (worker.info is None and worker.proc is not None
                      and now - worker.started_at > START_TIMEOUT):
                    logger.error("worker did not listen in time, killed", extra={
                        "worker": worker.index, "pid": worker.proc.pid})
                    worker.proc.kill()
            if self.redis is not None and not self.redis.alive():
                logger.error("private redis-server died; starting it again")
                self.redis.stop()
                self.redis.start()
            if not self.announced:
                if all(w.info is not None for w in self.workers):
                    self.announced = True
                    self.announce([dict(w.info or {}) for w in self.workers])
                elif now > deadline:
                    logger.error("workers did not listen in time")
                    return 1
        logger.info("stopping workers", extra={"signal": signal.Signals(self.signal).name})
        return 0

    def _note_ready(self, worker: Worker) -> None:
        assert worker.ready_fd is not None
        try:
            chunk = os.read(worker.ready_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            worker.buffer += chunk
        if b"\n" in worker.buffer:
            line = worker.buffer.split(b"\n", 1)[0]
            try:
                worker.info = json.loads(line)
            except ValueError:
                worker.info = {}
            worker.info.setdefault("worker", worker.index)
            logger.info("worker up", extra={
                "worker": worker.index, "pid": worker.info.get("pid"),
                "node": worker.info.get("node"), "link_url": worker.info.get("link_url"),
                "started_in": round(time.monotonic() - worker.started_at, 2)})
            self._write_targets()
        if chunk == b"" or worker.info is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _died(self, worker: Worker, now: float) -> None:
        assert worker.proc is not None
        code = worker.proc.returncode
        uptime = now - worker.started_at
        worker.deaths = 1 if uptime >= STABLE_AFTER else worker.deaths + 1
        delay = RESTART_DELAYS[min(worker.deaths, len(RESTART_DELAYS)) - 1]
        logger.warning("worker died", extra={
            "worker": worker.index, "pid": worker.proc.pid, "code": code,
            "signal": signal.Signals(-code).name if code < 0 else None,
            "uptime": round(uptime, 1), "restart_in": delay})
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None
        worker.proc, worker.info, worker.restart_at = None, None, now + delay

    def _write_targets(self) -> None:
        """The workers' private addresses as Prometheus ``file_sd`` targets (atomic)."""
        targets = []
        for w in self.workers:
            url = (w.info or {}).get("link_url")
            if url:
                targets.append({"targets": [url.split("://", 1)[1]],
                                "labels": {"worker": f"w{w.index}",
                                           "node": str((w.info or {}).get("node", ""))}})
        path = self.library / TARGETS_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(targets, indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("prometheus targets not written", extra={"error": str(exc)})

    def _shutdown(self) -> None:
        live = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker did not stop in time, killed", extra={"pid": proc.pid})
                proc.kill()
                proc.wait(5)
        for worker in self.workers:
            if worker.ready_fd is not None:
                os.close(worker.ready_fd)
                worker.ready_fd = None
            worker.proc = None
        if self.redis is not None:
            self.redis.stop()
            self.redis.release()
        with contextlib.suppress(FileNotFoundError):
            (self.library / TARGETS_FILE).unlink()
        logger.info("workers stopped", extra={"workers": self.count})
