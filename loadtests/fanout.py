"""Fan-out benchmark: what one more classroom costs the relay, how many one relay core holds.

    python -m loadtests.fanout --json out.json              # sweep, MediaRelay, search
    python -m loadtests.fanout --workers 2 --json out.json  # one relay process vs 2 nodes
    python -m loadtests.fanout --subscribers 20             # one point of the product relay
    python -m loadtests.fanout --send-path tasks            # a sender task per subscriber

The relay runs in a process of its own (``loadtests.relay_proc``) pinned to the first CPU;
this process (the teacher) and the subscriber processes are pinned to the others
(``os.sched_setaffinity``; each process's and thread's observed affinity is in the JSON,
``affinity``), so the load generator's cost is not taken from the relay. The teacher is
640x360 30 fps VP8 encoded once before measuring and replayed
(``loadtests.encoded_source.LoopedEncodedSource``) with live Opus; the subscribers are
light receivers (``loadtests.light_receiver.LightPeer``: counted at the socket from the
RTP header, receiver reports still sent) in ``--client-procs`` processes. The relay's CPU
is read from /proc/PID/stat over a steady window after a warm-up, its RSS from
/proc/PID/status; each point also says how busy each core was (/proc/stat) and what the
generator took.

In one run (default):
1. **product sweep** N = 0, 10, 20, 50: the per-subscriber cost is the least-squares slope
   of the relay's CPU over N (the N=0 point is the decoder and encoder, running while the
   teacher's media flows); forward latency is the relay's own histogram (arrival ->
   written for a subscriber, scraped from /metrics) at N = 50.
2. **capacity search** (same relay): subscribers are added (and removed) until the most N
   at which the worst subscriber still gets >= 0.95 of the source's frames over the window
   is bracketed within ``--resolution`` or ``--search-seconds`` have gone:
   ``subscribers_per_core`` (the relay has one core).
3. **baseline**: aiortc's MediaRelay (one encoder per subscriber) at N = 0, 1, 2, 4 on the
   same one core, its slope over the points where it still delivers >= 90 % (``ratio``
   = its slope / the product's), then the same search (``baseline_subscribers_per_core``).

``--workers K`` (K >= 2) instead compares, in one run, the most subscribers delivered >=
0.95 (the same search) by one relay process (``classroom serve --workers 1`` on a private
``redis-server``, as loadtests.cascade starts a node, pinned to CPU 0, the generator on the
others) and by K (``classroom serve --workers K`` as shipped: one port, its own
redis-server, the workers nodes of one cascade; worker i pinned to CPU i mod CPUs; the
kernel spreads the classrooms' sockets over them; ``--workers-how nodes``: K single-process
nodes on one redis-server, classrooms split evenly). Beside K processes the generator has
no CPU of its own and shares them all (the JSON says so, and what it used). Classrooms
there are light receivers negotiated through signaling (loadtests.cascade.Classroom) in
subscriber processes. Fields: ``max_subscribers_one_process``, ``max_subscribers_workers``,
``workers_gain``, and each search (``one_process``, ``workers``) with its points.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from classroom_client.media import install_counting_decoder, receive_codecs, receive_counts
from media_relay.sockets import enlarge_receive_buffers, install_batched_reads

PRODUCT_SWEEP = (0, 10, 20, 50)
BASELINE_SWEEP = (0, 1, 2, 4)
TARGETS = {"ratio": 20.0, "p95_forward_ms": 20.0, "delivered_fps_ratio": 0.95,
           "relay_rss_mb_per_subscriber": 2.0}
BASELINE_DELIVERING = 0.9
DELIVERED = 0.95
"""A point holds when its worst subscriber got this share of the source's video frames."""
SOURCE = (640, 360, 30)
SOURCE_BITRATE = 500_000
AUDIO_PACKETS_PER_SECOND = 50  # 20 ms Opus
H264_TAG = "-h264-"
"""In a subscriber id (``high-h264-c31``): that light receiver offers only H.264 (abr)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- cores -----------------------------------------------------------------------------------
@dataclass
class Cores:
    """Which CPUs the relay processes and the load generator may use (None: not pinned)."""

    relays: list[int] | None
    generator: list[int] | None

    @classmethod
    def split(cls, pin: bool = True) -> Cores:
        """The first CPU for the relay, the others for the generator (this process and its
        subscriber processes, which inherit it); no pinning on a one-CPU machine."""
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls([cpus[0]], cpus[1:])

    def pin_generator(self) -> None:
        if self.generator:
            pin_process(self.generator)

    def relay_preexec(self, cpus: Sequence[int] | None = None) -> Callable[[], None] | None:
        """For a child's ``preexec_fn``: pinned before it starts (every thread inherits)."""
        chosen = list(cpus) if cpus is not None else self.relays
        if not chosen:
            return None
        return lambda: os.sched_setaffinity(0, chosen)


def pin_process(cpus: Sequence[int]) -> None:
    """Pin every thread of this process (``sched_setaffinity(0)`` pins the calling thread
    only; the executor's threads would stay where they were)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # the thread has just ended
            pass


def observed_affinity(pid: int | str = "self") -> list[int]:
    """The CPUs any thread of ``pid`` may run on now (read back from /proc, not assumed)."""
    cpus: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            cpus |= os.sched_getaffinity(int(tid))
    except OSError:
        return []
    return sorted(cpus)


def core_jiffies() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per CPU since boot (/proc/stat)."""
    out: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                numbers = [int(v) for v in values]
                idle = numbers[3] + numbers[4]
                out[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return out


def core_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
              ) -> dict[str, float]:
    """How busy each CPU was between two :func:`core_jiffies` (1.0 = all the time)."""
    return {str(cpu): round((after[cpu][0] - before[cpu][0])
                            / max(1, after[cpu][1] - before[cpu][1]), 3)
            for cpu in sorted(after) if cpu in before}


# ---- the relay process -----------------------------------------------------------------------
def process_cpu(pid: int | str, thread: int | None = None) -> float:
    """CPU-seconds (user + system) of a process, or of one of its threads (``thread``:
    its tid; the main thread's tid is the pid)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RelayProcess:
    """``loadtests.relay_proc`` in a child process, pinned by ``preexec`` (Cores)."""

    def __init__(self, mode: str, send_path: str = "batched",
                 preexec: Callable[[], None] | None = None, profile: str | None = None) -> None:
        self.mode = mode
        self.send_path = send_path
        self.preexec = preexec
        self.profile = profile
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        profile = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *profile, "-m", "loadtests.relay_proc", "--mode", self.mode,
            "--port", "0", "--send-path", self.send_path, stdout=asyncio.subprocess.PIPE,
            preexec_fn=self.preexec)
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"relay process did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return process_cpu(self.pid)

    def rss_mb(self) -> float:
        return process_rss_mb(self.pid)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def parse_histogram(text: str, name: str) -> dict[str, dict[float, float]]:
    """``{kind: {upper_bound: cumulative count}}`` from Prometheus text (kind "" for a
    histogram without a ``kind`` label)."""
    out: dict[str, dict[float, float]] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, value = line[len(prefix):].rsplit("} ", 1)
        parts = dict(p.split("=", 1) for p in labels.split(","))
        kind = parts.get("kind", "").strip('"')
        le = parts["le"].strip('"')
        out.setdefault(kind, {})[float("inf") if le == "+Inf" else float(le)] = float(value)
    return out


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Quantile of cumulative buckets, linear inside a bucket (Prometheus' method)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def delta_buckets(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {b: after[b] - before.get(b, 0.0) for b in after}


FORWARD_METRIC = "classroom_relay_forward_latency_seconds"


def forward_p95(before: str, after: str) -> tuple[dict[str, float | None], float | None]:
    """p95 forward latency (ms) by kind and over every kind, between two /metrics texts."""
    hist0, hist1 = parse_histogram(before, FORWARD_METRIC), parse_histogram(after, FORWARD_METRIC)
    p95: dict[str, float | None] = {}
    combined: dict[float, float] = {}
    for kind, buckets in hist1.items():
        delta = delta_buckets(buckets, hist0.get(kind, {}))
        q = quantile(delta, 0.95)
        p95[kind] = round(q * 1000, 2) if q is not None else None
        for bound, count in delta.items():
            combined[bound] = combined.get(bound, 0.0) + count
    q_all = quantile(combined, 0.95) if combined else None
    return p95, (round(q_all * 1000, 2) if q_all is not None else None)


# ---- the subscriber processes ----------------------------------------------------------------
def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate(session: aiohttp.ClientSession, url: str, path: str, peer_id: str,
                    pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with session.post(f"{url}{path}", json={"peer_id": peer_id,
                                                  "sdp": pc.localDescription.sdp}) as resp:
        body = await resp.json()
    if "sdp" not in body:
        raise RuntimeError(f"{path} failed: {body}")
    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))


AddSubscribers = Callable[[aiohttp.ClientSession, str, list[str]], Awaitable[int]]
"""(session, relay url, peer ids) -> connect those subscribers; returns how many there are."""
DropSubscribers = Callable[[int], Awaitable[int]]
"""(k) -> close the k newest subscribers; returns how many are left."""
HealSubscribers = Callable[[aiohttp.ClientSession, float], Awaitable[int]]
"""(session, s) -> replace the subscribers that got no audio for s seconds (their
connection died: a relay overloaded by an earlier point lets consent checks lapse);
returns how many were replaced."""


async def serve_commands(add: AddSubscribers, counts: Callable[[], list],
                         drop: DropSubscribers | None = None,
                         heal: HealSubscribers | None = None) -> None:
    """A subscriber process's protocol: JSON commands on stdin, one JSON reply line each
    on stdout. ``{"cmd": "add", "url": U, "ids": [...]}`` connects subscribers (``add``;
    ``"urls": [...]`` instead of ``url``: one URL per id, one ``add`` per URL at once);
    ``{"cmd": "drop", "n": k}`` closes the k newest; ``{"cmd": "heal", "silent": s}``
    replaces those silent for s seconds (in place: same position, a new peer id);
    ``{"cmd": "counts"}`` replies
    ``{"counts": [[video_frames, audio_packets], ...], "cpu": s}``; EOF ends."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command["cmd"] == "add":
                groups: dict[str, list[str]] = {}
                urls = command.get("urls") or [command["url"]] * len(command["ids"])
                for url, peer_id in zip(urls, command["ids"], strict=True):
                    groups.setdefault(url, []).append(peer_id)
                sizes = await asyncio.gather(*(add(session, url, ids)
                                               for url, ids in groups.items()))
                reply: dict = {"ok": max(sizes, default=0)}
            elif command["cmd"] == "drop":
                if drop is None:
                    raise RuntimeError("this subscriber process cannot drop subscribers")
                reply = {"ok": await drop(command["n"])}
            elif command["cmd"] == "heal":
                reply = {"ok": await heal(session, command["silent"]) if heal else 0}
            else:
                reply = {"counts": counts(), "cpu": process_cpu("self")}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


async def light_worker_main() -> None:
    """Subscribers as light receivers (light_receiver.LightPeer: counted at the socket once
    ICE has connected, receiver reports still sent), negotiated over the relay process's
    HTTP; an id with ``H264_TAG`` offers only H.264 (an old TV box)."""
    from loadtests.light_receiver import LightPeer

    install_batched_reads()  # drain up to 32 datagrams per wake-up, as the relay does
    peers: list[LightPeer] = []
    where: list[tuple[str, str]] = []  # (url, peer id) of each
    generation = [0]

    async def connect(session: aiohttp.ClientSession, url: str, ids: list[str]
                      ) -> list[LightPeer]:
        batch = [LightPeer(new_pc(), ("video", "audio")) for _ in ids]
        for peer_id, peer in zip(ids, batch, strict=True):
            if H264_TAG in peer_id:
                video = next(t for t in peer.pc.getTransceivers() if t.kind == "video")
                video.setCodecPreferences(receive_codecs("h264"))
        async def one(peer_id: str, peer: LightPeer) -> None:
            try:
                await negotiate(session, url, "/subscribe", peer_id, peer.pc)
                await peer.connected()
            except Exception as exc:  # noqa: BLE001 - an overloaded relay: counted as silent
                print(f"subscriber {peer_id} did not connect: {exc!r}", file=sys.stderr)

        await asyncio.gather(*(one(peer_id, peer)
                               for peer_id, peer in zip(ids, batch, strict=True)))
        return batch

    async def add(session: aiohttp.ClientSession, url: str, ids: list[str]) -> int:
        peers.extend(await connect(session, url, ids))
        where.extend((url, peer_id) for peer_id in ids)
        return len(peers)

    async def drop(n: int) -> int:
        gone = [peers.pop() for _ in range(min(n, len(peers)))]
        del where[len(peers):]
        await asyncio.gather(*(p.pc.close() for p in gone))
        return len(peers)

    async def heal(session: aiohttp.ClientSession, silent: float) -> int:
        now = time.monotonic()
        dead = [i for i, p in enumerate(peers) if p.pc.connectionState != "connected"
                or (p.counts[1].last_frame_at or 0.0) < now - silent]
        generation[0] += 1

        async def replace(i: int) -> None:
            await peers[i].pc.close()
            url, peer_id = where[i]
            peers[i], = await connect(session, url, [f"{peer_id}-r{generation[0]}"])

        for k in range(0, len(dead), 20):  # 20 at a time, like the joins
            await asyncio.gather(*(replace(i) for i in dead[k:k + 20]))
        return len(dead)

    await serve_commands(add, lambda: [[p.counts[0].frames, p.counts[1].frames]
                                       for p in peers], drop, heal)
    for peer in peers:
        await peer.pc.close()


async def signaling_worker_main() -> None:
    """Subscribers as classrooms of a ``classroom serve`` node: a light receiver negotiated
    through signaling (loadtests.cascade.Classroom); ``url`` is the node, ids are numbers;
    the secret and lesson come from FANOUT_SECRET and FANOUT_LESSON."""
    from loadtests.cascade import Classroom

    install_batched_reads()
    secret, lesson = os.environ["FANOUT_SECRET"], os.environ["FANOUT_LESSON"]
    rooms: list[Classroom] = []

    async def join(room: Classroom, node: Any) -> None:
        try:
            await room.join(node)
        except Exception as exc:  # noqa: BLE001 - an overloaded node: silent, healed later
            print(f"classroom {room.n} did not join: {exc!r}", file=sys.stderr)
            await room.leave()

    async def add(session: aiohttp.ClientSession, url: str, ids: list[str]) -> int:
        node = NodeRef(url, secret)
        batch = [Classroom(node, lesson, int(i)) for i in ids]  # type: ignore[arg-type]
        await asyncio.gather(*(join(room, node) for room in batch))
        rooms.extend(batch)
        return len(rooms)

    async def drop(n: int) -> int:
        gone = [rooms.pop() for _ in range(min(n, len(rooms)))]
        for i in range(0, len(gone), 20):  # in parallel, 20 at a time
            await asyncio.gather(*(r.leave() for r in gone[i:i + 20]))
        return len(rooms)

    async def heal(session: aiohttp.ClientSession, silent: float) -> int:
        now = time.monotonic()
        dead = [r for r in rooms if r.peer is None or r.peer.pc.connectionState != "connected"
                or (r.peer.counts[1].last_frame_at or 0.0) < now - silent]
        for k in range(0, len(dead), 20):  # join again (the same classroom: it leaves first)
            await asyncio.gather(*(join(room, room.node) for room in dead[k:k + 20]))
        return len(dead)

    def counts() -> list[list[int]]:
        return [[r.peer.counts[0].frames, r.peer.counts[1].frames] if r.peer else [0, 0]
                for r in rooms]

    await serve_commands(add, counts, drop, heal)
    for room in rooms:
        await room.leave()


@dataclass
class NodeRef:
    """What loadtests.cascade.Classroom reads of a node: its URL and the district secret."""

    url: str
    secret: str


class _AiortcSubscriber:
    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.tracks: dict[str, object] = {}

        @pc.on("track")
        def on_track(track) -> None:
            self.tracks[track.kind] = track

    def counts(self) -> tuple[int, int]:
        video, audio = self.tracks.get("video"), self.tracks.get("audio")
        return (receive_counts(video).frames if video else 0,
                receive_counts(audio).frames if audio else 0)


async def worker_main() -> None:
    """Subscribers as aiortc receivers with a counting decoder (``--receivers aiortc``:
    the old load generator, ~4x the cost of a light receiver; kept to compare)."""
    install_counting_decoder()
    subscribers: list[_AiortcSubscriber] = []

    async def add(session: aiohttp.ClientSession, url: str, ids: list[str]) -> int:
        batch = []
        for peer_id in ids:
            pc = new_pc()
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            subscribers.append(_AiortcSubscriber(pc))
            batch.append(negotiate(session, url, "/subscribe", peer_id, pc))
        await asyncio.gather(*batch)
        for sub in subscribers[-len(batch):]:
            enlarge_receive_buffers(sub.pc, 1 << 20)
        return len(subscribers)

    async def drop(n: int) -> int:
        for _ in range(min(n, len(subscribers))):
            await subscribers.pop().pc.close()
        return len(subscribers)

    await serve_commands(add, lambda: [s.counts() for s in subscribers], drop)
    for sub in subscribers:
        await sub.pc.close()


WORKER_MAINS = {"light": light_worker_main, "aiortc": worker_main,
                "signaling": signaling_worker_main}


class Worker:
    """The driver's handle on one subscriber process (``receivers``: WORKER_MAINS)."""

    def __init__(self, receivers: str = "light", env: dict[str, str] | None = None) -> None:
        self.receivers = receivers
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.size = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtests.fanout", "--worker", "--receivers", self.receivers,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **(self.env or {})})

    async def call(self, command: dict, timeout: float = 90) -> dict:
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("subscriber process died")
        return json.loads(line)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Farm:
    """The subscriber processes as one pool: ``resize`` to N subscribers (spread over the
    processes, 5 at a time per process; subscriber i goes to ``url_of(i)``), ``counts``."""

    def __init__(self, workers: list[Worker], url_of: Callable[[int], str],
                 id_of: Callable[[int], str] = lambda i: f"c{i}") -> None:
        self.workers = workers
        self.url_of = url_of
        self.id_of = id_of
        self.ids: list[list[str]] = [[] for _ in workers]
        self.worker_cpu = 0.0

    @property
    def size(self) -> int:
        return sum(len(ids) for ids in self.ids)

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))

    async def resize(self, target: int) -> None:
        while self.size < target:
            calls = []
            for index, worker in enumerate(self.workers):
                first = self.size
                batch = list(range(first, min(target, first + 5)))
                if not batch:
                    break
                self.ids[index].extend(self.id_of(i) for i in batch)
                calls.append(worker.call({"cmd": "add", "ids": [self.id_of(i) for i in batch],
                                          "urls": [self.url_of(i) for i in batch]}))
            await asyncio.gather(*calls)
        while self.size > target:  # the newest first, from the fullest process
            index = max(range(len(self.workers)), key=lambda i: len(self.ids[i]))
            n = min(len(self.ids[index]), self.size - target)
            await self.workers[index].call({"cmd": "drop", "n": n}, 600)
            del self.ids[index][-n:]

    async def heal(self, silent: float = 2.0) -> int:
        """Replace the subscribers whose connection died (no audio for ``silent`` s)."""
        replies = await asyncio.gather(*(w.call({"cmd": "heal", "silent": silent}, 600)
                                         for w in self.workers))
        return sum(r["ok"] for r in replies)

    async def counts(self) -> dict[str, tuple[int, int]]:
        replies = await asyncio.gather(*(w.call({"cmd": "counts"}) for w in self.workers))
        self.worker_cpu = sum(r["cpu"] for r in replies)
        out: dict[str, tuple[int, int]] = {}
        for names, reply in zip(self.ids, replies, strict=True):
            out.update(zip(names, (tuple(c) for c in reply["counts"]), strict=True))
        return out

    async def all_receiving(self) -> bool:
        return all(v > 0 and a > 0 for v, a in (await self.counts()).values())

    def cpu(self) -> float:
        """CPU-seconds of the subscriber processes at the last ``counts``, and this one."""
        return self.worker_cpu + process_cpu("self")


async def until(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Whether ``condition`` came true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


# ---- the teacher -----------------------------------------------------------------------------
class LoopedTeacherSource:
    """The 640x360 teacher, encoded once and replayed (a PLI gets the current frame's
    intra twin), so the generator's core is not spent encoding."""

    def __init__(self) -> None:
        from loadtests.encoded_source import LoopedEncodedSource

        width, height, fps = SOURCE
        self.source = LoopedEncodedSource(width, height, fps, bitrate=SOURCE_BITRATE)
        self._tracks: list[Any] = []
        self._started = False

    def tracks(self) -> tuple[Any, Any]:
        """Fresh (video, audio) tracks for a new publishing connection (the last ones stop)."""
        for track in self._tracks:
            track.stop()
        self._tracks = [self.source.track("video"), self.source.track("audio")]
        return self._tracks[0], self._tracks[1]

    async def prepare(self) -> None:
        await self.source.prepare()  # seconds of CPU: before anything is measured

    def attach(self, pc: RTCPeerConnection) -> None:
        """Route the connection's PLIs to the source; start it (once)."""
        for transceiver in pc.getTransceivers():
            if transceiver.sender.track is not None:
                self.source.attach_sender(transceiver.sender)
        if not self._started:
            self._started = True
            self.source.start()

    @property
    def frames(self) -> int:
        return self.source.frames

    async def close(self) -> None:
        await self.source.close()


class HttpTeacher:
    """The teacher of a loadtests.relay_proc relay, published over its HTTP; published again
    (:meth:`revive`) when its connection died (a relay overloaded by a point lets the
    consent checks lapse, and a search must not go on measuring a lesson with no source)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.source = LoopedTeacherSource()
        self.pc: RTCPeerConnection | None = None
        self.republished = 0

    @property
    def frames(self) -> int:
        return self.source.frames

    async def publish(self, session: aiohttp.ClientSession) -> None:
        if self.pc is not None:
            await self.pc.close()
        pc = self.pc = new_pc()
        video, audio = self.source.tracks()
        pc.addTransceiver(video, direction="sendonly")
        pc.addTransceiver(audio, direction="sendonly")
        await self.source.prepare()
        await negotiate(session, self.url, "/publish", "teacher", pc)
        self.source.attach(pc)

        async def published() -> bool:
            return pc.connectionState == "connected"

        await wait_until(published, 20, "publisher connected")

    async def revive(self, session: aiohttp.ClientSession) -> bool:
        if self.pc is not None and self.pc.connectionState == "connected":
            return False
        self.republished += 1
        await self.publish(session)
        return True

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        await self.source.close()


# ---- one measured point ----------------------------------------------------------------------
@dataclass
class Point:
    mode: str
    subscribers: int
    cpu: float
    rss_mb: float
    delivered_min: float | None
    delivered_mean: float | None
    audio_delivered_min: float | None
    sent_fps: float
    p95_ms: dict[str, float | None] = field(default_factory=dict)
    p95_all_ms: float | None = None
    client_cpu: float | None = None
    """CPU-s/s of the whole load generator (teacher + subscriber processes)."""
    core_busy: dict[str, float] | None = None
    """How busy each CPU was over the window (the relay's and the generator's)."""
    relay_cpu_by_process: list[float] | None = None
    loadavg: list[float] | None = None
    tiers: dict[str, int] | None = None
    relay_drops: int | None = None
    relay_rendition: dict | None = None
    relay_queue_wait: dict | None = None
    relay_send: dict | None = None
    udp_errors: dict | None = None
    phase: str = "sweep"
    settle_seconds: float | None = None
    """Waited before the warm-up for the relays to forget dropped subscribers and lift
    demoted ones back to the top tier (``settled`` False: still not, at the deadline)."""
    settled: bool | None = None
    replaced: int = 0
    teacher_republished: bool = False
    fresh_relay: bool = False
    all_connected: bool = True
    """Every subscriber had media before the warm-up (False: some never connected)."""
    """Measured on relays started afresh (the point before failed)."""
    """The teacher's connection had died (an earlier overloaded point) and was made again."""
    """Subscribers replaced before this point: their connection had died (no audio for
    2 s), after a relay overloaded by an earlier point let their consent checks lapse."""
    subscribers_by_process: list[int] | None = None
    """classroom serve: subscribers attached to each relay process's renditions (the
    ``classroom_subscribers`` gauges; an edge's link to the origin is not among them)."""
    other_cpu: float | None = None
    """CPU-s/s the machine spent outside the relays and the generator (other jobs, the
    kernel's share not charged to a process) over the window."""

    @property
    def holds(self) -> bool:
        return (self.delivered_min or 0.0) >= DELIVERED if self.subscribers else True


@dataclass
class Bench:
    """What a point is measured against: the relay processes (pid, url; ``stats`` when
    they answer loadtests.relay_proc's /stats), the subscriber farm and the teacher."""

    mode: str
    pids: Callable[[], list[int]]
    metrics_urls: list[str]
    farm: Farm
    teacher_frames: Callable[[], int]
    stats_url: str | None = None
    log: Callable[[str], None] = print
    recover_seconds: float = 30.0
    revive: Callable[[], Awaitable[bool]] | None = None
    """Publish the teacher again if its connection died; True when it did."""
    reset: Callable[[], Awaitable[None]] | None = None
    """Start the relays and the teacher afresh (the subscribers dropped; ``measure`` adds
    them again), updating this Bench's URLs: after a failing point of the search."""


async def fetch(session: aiohttp.ClientSession, url: str, as_json: bool = False) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return await (resp.json() if as_json else resp.text())


async def measure(bench: Bench, session: aiohttp.ClientSession, n: int, warmup: float,
                  window: float, phase: str) -> Point:
    """Resize the farm to ``n``, wait until every subscriber receives, warm up, measure."""
    republished = False
    if bench.revive is not None:
        try:
            republished = await bench.revive()
        except Exception as exc:  # noqa: BLE001 - an overloaded relay: the point will fail
            bench.log(f"  the teacher could not publish again: {exc!r}")
            republished = True
    await bench.farm.resize(n)
    # an overloaded relay may not connect everyone: those count as silent (the point fails)
    receiving = await until(bench.farm.all_receiving, 60)
    if republished:
        await asyncio.sleep(3)  # the subscribers' media back from the new publisher
    replaced = 0
    for _ in range(3):  # subscribers a relay overloaded by the last point let die
        healed = await bench.farm.heal()
        replaced += healed
        if not healed:
            break
        await asyncio.sleep(1)
    waited, settled = await settle(bench, session, n, bench.recover_seconds)
    await asyncio.sleep(warmup)
    metrics0 = [await fetch(session, f"{u}/metrics") for u in bench.metrics_urls]
    got0 = await bench.farm.counts()
    client0 = bench.farm.cpu()
    udp0, jiffies0 = udp_counters(), core_jiffies()
    pids = bench.pids()
    cpu0 = [process_cpu(p) for p in pids]
    t0, sent0 = time.monotonic(), bench.teacher_frames()
    await asyncio.sleep(window)
    cpu1 = [process_cpu(p) for p in pids]
    t1, sent1 = time.monotonic(), bench.teacher_frames()
    jiffies1 = core_jiffies()
    got1 = await bench.farm.counts()
    client1 = bench.farm.cpu()
    udp1 = udp_counters()
    metrics1 = [await fetch(session, f"{u}/metrics") for u in bench.metrics_urls]
    span = t1 - t0
    sent = max(1, sent1 - sent0)
    audio_sent = max(1.0, AUDIO_PACKETS_PER_SECOND * span)
    pairs = [(got0.get(k, (0, 0)), got1[k]) for k in got1]
    ratios = [(b[0] - a[0]) / sent for a, b in pairs]
    audio_ratios = [(b[1] - a[1]) / audio_sent for a, b in pairs]
    p95, p95_all = forward_p95("\n".join(metrics0), "\n".join(metrics1))
    per_process = [round((b - a) / span, 4) for a, b in zip(cpu0, cpu1, strict=True)]
    point = Point(
        mode=bench.mode, subscribers=n, cpu=round(sum(per_process), 4),
        rss_mb=round(sum(process_rss_mb(p) for p in pids), 1),
        delivered_min=round(min(ratios), 3) if ratios else None,
        delivered_mean=round(sum(ratios) / len(ratios), 3) if ratios else None,
        audio_delivered_min=round(min(audio_ratios), 3) if audio_ratios else None,
        sent_fps=round(sent / span, 1), p95_ms=p95, p95_all_ms=p95_all,
        client_cpu=round((client1 - client0) / span, 3), core_busy=core_busy(jiffies0, jiffies1),
        relay_cpu_by_process=per_process, loadavg=[round(x, 2) for x in os.getloadavg()],
        udp_errors={k: udp1[k] - udp0.get(k, 0) for k in udp1}, phase=phase,
        settle_seconds=waited, settled=settled, replaced=replaced,
        teacher_republished=republished, all_connected=receiving)
    if bench.stats_url is None:  # classroom serve: who holds how many (rendition gauges)
        point.subscribers_by_process = [
            int(sum(gauge(text, "classroom_subscribers", "tier").values())) for text in metrics1]
    busy = point.core_busy or {}
    point.other_cpu = round(sum(busy.values()) - point.cpu - (point.client_cpu or 0), 3)
    if bench.stats_url is not None:
        stats = await fetch(session, f"{bench.stats_url}/stats", True)
        point.tiers = stats.get("tiers")
        point.relay_drops = _drops(stats)
        point.relay_queue_wait = _waits(stats)
        point.relay_send = _send_stats(stats)
        point.relay_rendition = (stats.get("lessons", {}).get("bench") or {}).get(
            "renditions", [None])[0]
    bench.log(f"  {bench.mode:8s} {phase:6s} N={n:3d}  cpu={point.cpu:.3f} {per_process} "
              f"rss={point.rss_mb:.1f} MB  delivered min={point.delivered_min} "
              f"audio min={point.audio_delivered_min}  sent={point.sent_fps} fps  "
              f"p95={p95}  generator cpu={point.client_cpu}  cores busy={point.core_busy}  "
              f"other={point.other_cpu}  tiers={point.tiers}  drops={point.relay_drops}  "
              f"udp={point.udp_errors}  settled={settled} after {waited} s  "
              f"replaced={replaced}  teacher republished={republished}")
    return point


def gauge(text: str, name: str, label: str) -> dict[str, float]:
    """``{label value: value}`` of a Prometheus gauge in /metrics text."""
    out: dict[str, float] = {}
    prefix = name + "{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix):].rsplit("} ", 1)
            parts = dict(p.split("=", 1) for p in labels.split(","))
            key = parts.get(label, "").strip('"')
            out[key] = out.get(key, 0.0) + float(value)
    return out


async def settle(bench: Bench, session: aiohttp.ClientSession, n: int, timeout: float
                 ) -> tuple[float, bool]:
    """Before a point: until the relays count ``n`` subscribers (dropped ones forgotten) and
    none is below the top tier (the rate controller demotes subscribers while a relay is
    overloaded and climbs back in steps: a point after a failing one must not inherit
    that), at most ``timeout`` s. Returns (seconds waited, settled)."""
    start = time.monotonic()
    while True:
        if bench.stats_url is not None:  # loadtests.relay_proc: every subscriber's tier
            stats = await fetch(session, f"{bench.stats_url}/stats", True)
            tiers = stats.get("tiers") or {}
            ok = stats.get("subscribers", n) == n and all(
                count == 0 for tier, count in tiers.items() if tier != "high")
        else:  # classroom serve: the subscribers attached to each tier's rendition
            tiers = {}
            for url in bench.metrics_urls:
                for tier, count in gauge(await fetch(session, f"{url}/metrics"),
                                         "classroom_subscribers", "tier").items():
                    tiers[tier] = tiers.get(tier, 0) + count
            ok = all(count == 0 for tier, count in tiers.items() if tier != "high")
        waited = round(time.monotonic() - start, 1)
        if ok or waited >= timeout:
            return waited, ok
        await asyncio.sleep(0.5)


@dataclass
class Bracket:
    """The search's state: the most N seen holding (``good``) and the least N above it seen
    failing (``bad``; a failure below a holding N is noise: it is in the points, not here).
    Up by x``growth`` until a point fails (x``near`` once the busiest relay process of
    the holding point used ``busy`` of a core or more: a big overshoot overloads the relay
    so far that connections die), then halving until ``bad - good`` is at most
    ``resolution`` x good (at least 1)."""

    resolution: float
    growth: float = 1.5
    near: float = 1.2
    busy: float = 0.6
    good: int = 0
    good_load: float = 0.0
    failed: list[int] = field(default_factory=list)

    @property
    def bad(self) -> int | None:
        return min((n for n in self.failed if n > self.good), default=None)

    def record(self, n: int, holds: bool, load: float = 0.0) -> None:
        """``load``: the busiest relay process's cores at that point."""
        if holds:
            if n >= self.good:
                self.good, self.good_load = n, load
        else:
            self.failed.append(n)

    @property
    def done(self) -> bool:
        bad = self.bad
        return bad is not None and bad - self.good <= max(1.0, self.resolution * self.good)

    def next(self, start: int) -> int:
        """The N to try next (``start``: the first N of the ramp)."""
        bad = self.bad
        if bad is None:
            growth = self.near if self.good_load >= self.busy else self.growth
            return max(start, self.good + 2, int(self.good * growth))
        return (self.good + bad) // 2


async def search(bench: Bench, session: aiohttp.ClientSession, start: int, warmup: float,
                 window: float, budget: float, resolution: float,
                 known: list[Point] | None = None) -> dict:
    """The most subscribers at which the point holds (delivered >= DELIVERED), bracketed
    between a holding and a failing N (:class:`Bracket`), or what is known when ``budget``
    seconds have gone. ``known``: points already measured on this relay (the sweep)."""
    deadline = time.monotonic() + budget
    bracket = Bracket(resolution)
    for p in known or []:
        bracket.record(p.subscribers, p.holds, max(p.relay_cpu_by_process or [0.0]))
    points: list[Point] = []
    failed = False
    while time.monotonic() < deadline and not bracket.done:
        n = bracket.next(start)
        if failed and bench.reset is not None:
            # an overloaded relay does not come back by itself: the rate controller has
            # demoted most subscribers (two more encoders) and connections may have died
            bench.log("  (fresh relay after a failing point)")
            await bench.reset()
        point = await measure(bench, session, n, warmup, window, "search")
        point.fresh_relay = failed and bench.reset is not None
        points.append(point)
        bracket.record(n, point.holds, max(point.relay_cpu_by_process or [0.0]))
        failed = not point.holds
    every = (known or []) + points
    return {"subscribers": bracket.good, "first_failing": bracket.bad,
            "bracketed": bracket.done, "limited_by": limited_by(every, bracket.bad),
            **cost_per_subscriber(every), "points": [asdict(p) for p in points]}


def limited_by(points: list[Point], bad: int | None) -> str | None:
    """What was full at the first failing N: ``relay core`` (a relay process used >= 0.9
    of its core), ``machine`` (every CPU >= 0.9 busy, no relay process at its core's limit:
    the relays and the generator together), or ``neither`` (something else: latency)."""
    failing = [p for p in points if p.subscribers == bad and not p.holds]
    if not failing:
        return None
    p = failing[-1]
    if max(p.relay_cpu_by_process or [0.0]) >= 0.9:
        return "relay core"
    if p.core_busy and min(p.core_busy.values()) >= 0.9:
        return "machine"
    return "neither"


def cost_per_subscriber(points: list[Point]) -> dict[str, float | None]:
    """Slopes over the holding points: the relays' and the generator's CPU-s/s per
    subscriber (the generator's share says how far the machine, not the relay, limits)."""
    held = [p for p in points if p.holds]
    if len(held) < 2:
        return {"relay_cpu_per_subscriber": None, "generator_cpu_per_subscriber": None}
    xs = [p.subscribers for p in held]
    return {"relay_cpu_per_subscriber": round(slope(xs, [p.cpu for p in held]), 5),
            "generator_cpu_per_subscriber": round(
                slope(xs, [p.client_cpu or 0.0 for p in held]), 5)}


# ---- the relay_proc runs ---------------------------------------------------------------------
OBSERVED_AFFINITY: dict[str, list[int]] = {}
"""Each relay process's CPUs as read back from /proc while it ran (by mode)."""


async def run_relay(mode: str, sweep: tuple[int, ...], args: argparse.Namespace, cores: Cores,
                    log, search_from: int | None = None) -> tuple[list[Point], dict | None]:
    """The points of ``sweep`` on one relay process, then (``search_from``) the search."""
    profile = args.profile if mode == "product" else None
    state: dict[str, Any] = {}

    async def start_relay(session: aiohttp.ClientSession) -> None:
        relay = state["relay"] = RelayProcess(mode, args.send_path, cores.relay_preexec(),
                                              profile)
        await relay.start()
        state["teacher"] = HttpTeacher(relay.url)
        await state["teacher"].publish(session)

    async def stop_relay() -> None:
        if "teacher" in state:
            await state.pop("teacher").close()
        if "relay" in state:
            await state.pop("relay").stop()

    farm = Farm([Worker(args.receivers) for _ in range(args.client_procs)],
                lambda i: state["relay"].url)
    await farm.start()
    points: list[Point] = []
    found = None
    try:
        async with aiohttp.ClientSession() as session:
            await start_relay(session)
            url = state["relay"].url
            bench = Bench(mode, lambda: [state["relay"].pid], [url], farm,
                          lambda: state["teacher"].frames, url, log, args.recover_seconds,
                          lambda: state["teacher"].revive(session))

            async def reset() -> None:
                await farm.resize(0)
                await stop_relay()
                await start_relay(session)
                bench.metrics_urls = [state["relay"].url]
                bench.stats_url = state["relay"].url

            if profile is None:  # (a profile is of one relay process)
                bench.reset = reset
            for target in sweep:
                points.append(await measure(bench, session, target, args.warmup, args.window,
                                            "sweep"))
            if search_from is not None and args.search_seconds > 0:
                found = await search(bench, session, search_from, args.warmup,
                                     args.search_window, args.search_seconds, args.resolution,
                                     points)
                log(f"  {mode}: holds {found['subscribers']} subscribers on one core "
                    f"(first failing: {found['first_failing']})")
            OBSERVED_AFFINITY[f"{mode}_relay"] = observed_affinity(state["relay"].pid)
            OBSERVED_AFFINITY["generator"] = observed_affinity()
    finally:
        await stop_relay()
        await farm.stop()
    return points, found


def _waits(stats: dict) -> dict | None:
    lesson = stats.get("lessons", {}).get("bench")
    if not lesson or not lesson["subscribers"]:
        return None
    subs = list(lesson["subscribers"].values())
    return {kind: {"avg_ms": round(sum(s[kind]["wait_ms_avg"] or 0 for s in subs) / len(subs), 2),
                   "max_ms": max(s[kind]["wait_ms_max"] for s in subs)}
            for kind in ("video", "audio") if kind in subs[0]}


def udp_counters() -> dict[str, int]:
    """Machine-wide UDP drop counters (/proc/net/snmp): packets lost in socket buffers."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        values = dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))
    except (OSError, IndexError, ValueError):
        return {}
    return {k: values[k] for k in ("RcvbufErrors", "SndbufErrors", "InErrors") if k in values}


def _send_stats(stats: dict) -> dict | None:
    """Totals over the subscribers' batched streams (lifetime counters, not the window)."""
    lesson = stats.get("lessons", {}).get("bench")
    if not lesson or not lesson["subscribers"]:
        return None
    subs = list(lesson["subscribers"].values())
    video = [s["video"] for s in subs if s.get("video", {}).get("path") == "batched"]
    if not video:
        return None
    lost = [v["fraction_lost"] for v in video if v.get("fraction_lost") is not None]
    rtts = [v["rtt_ms"] for v in video if v.get("rtt_ms") is not None]
    return {"nacked": sum(v["nacked"] for v in video),
            "retransmits": sum(v["retransmits"] for v in video),
            "keyframe_requests": sum(s["keyframe_requests"] for s in subs),
            "max_fraction_lost": max(lost) if lost else None,
            "max_rtt_ms": max(rtts) if rtts else None}


def _drops(stats: dict) -> int | None:
    lesson = stats.get("lessons", {}).get("bench")
    if not lesson:
        return None
    return sum(s.get("video", {}).get("dropped", 0) for s in lesson["subscribers"].values())


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def summarize(product: list[Point], baseline: list[Point]) -> dict:
    result: dict = {}
    if len(product) >= 2:
        xs = [p.subscribers for p in product]
        result["relay_cpu_per_subscriber"] = round(slope(xs, [p.cpu for p in product]), 5)
        result["relay_rss_mb_per_subscriber"] = round(slope(xs, [p.rss_mb for p in product]), 3)
        loaded = [p for p in product if p.subscribers > 0]
        if len(loaded) >= 2:
            result["relay_cpu_per_subscriber_excluding_idle"] = round(
                slope([p.subscribers for p in loaded], [p.cpu for p in loaded]), 5)
    # The baseline slope is taken "where it still delivers >= 90 % of the frames": a
    # saturated point measures the core's cap, not the cost of a subscriber. The slope over
    # every point is kept beside it (``*_all_points``).
    delivering = [p for p in baseline
                  if p.subscribers == 0 or (p.delivered_min or 0) >= BASELINE_DELIVERING]
    result["baseline_points_delivering"] = [p.subscribers for p in delivering]
    if len(baseline) >= 2:
        result["baseline_cpu_per_subscriber_all_points"] = round(
            slope([p.subscribers for p in baseline], [p.cpu for p in baseline]), 5)
        result["baseline_rss_mb_per_subscriber"] = round(
            slope([p.subscribers for p in baseline], [p.rss_mb for p in baseline]), 3)
    if len(delivering) >= 2:
        result["baseline_cpu_per_subscriber"] = round(
            slope([p.subscribers for p in delivering], [p.cpu for p in delivering]), 5)
    relay = result.get("relay_cpu_per_subscriber")
    if relay:
        if "baseline_cpu_per_subscriber" in result:
            result["ratio"] = round(result["baseline_cpu_per_subscriber"] / relay, 1)
        if "baseline_cpu_per_subscriber_all_points" in result:
            result["ratio_all_points"] = round(
                result["baseline_cpu_per_subscriber_all_points"] / relay, 1)
    if product:
        top = max(product, key=lambda p: p.subscribers)
        result["p95_forward_ms"] = top.p95_all_ms
        result["p95_forward_ms_by_kind"] = top.p95_ms
        result["delivered_fps_ratio"] = top.delivered_min
        result["delivered_at_subscribers"] = top.subscribers
        result["generator_cpu_at_top"] = top.client_cpu
    result["points"] = [asdict(p) for p in product + baseline]
    return result


def print_report(result: dict) -> None:
    print()
    print(f"{'relay':9s} {'N':>4s} {'CPU-s/s':>8s} {'RSS MB':>7s} {'delivered':>10s} "
          f"{'p95 audio ms':>13s} {'p95 video ms':>13s} {'generator':>10s}")
    for p in result["points"]:
        print(f"{p['mode']:9s} {p['subscribers']:4d} {p['cpu']:8.3f} {p['rss_mb']:7.1f} "
              f"{p['delivered_min']!s:>10s} {p['p95_ms'].get('audio')!s:>13s} "
              f"{p['p95_ms'].get('video')!s:>13s} {p['client_cpu']!s:>10s}")
    print()
    checks = [
        ("relay CPU-s/s per subscriber", result.get("relay_cpu_per_subscriber"), None),
        ("baseline CPU-s/s per subscriber", result.get("baseline_cpu_per_subscriber"), None),
        ("ratio (baseline / relay)", result.get("ratio"), (">=", TARGETS["ratio"])),
        ("  ratio over every baseline point", result.get("ratio_all_points"), None),
        ("p95 forward latency ms", result.get("p95_forward_ms"), ("<=", TARGETS["p95_forward_ms"])),
        ("delivered fps ratio (worst)", result.get("delivered_fps_ratio"),
         (">=", TARGETS["delivered_fps_ratio"])),
        ("relay RSS MB per subscriber", result.get("relay_rss_mb_per_subscriber"),
         ("<", TARGETS["relay_rss_mb_per_subscriber"])),
        ("subscribers per relay core", result.get("subscribers_per_core"), None),
        ("  MediaRelay subscribers per core", result.get("baseline_subscribers_per_core"), None),
    ]
    for name, value, target in checks:
        verdict = ""
        if target is not None and value is not None:
            op, bound = target
            ok = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
            verdict = f"target {op} {bound}: {'PASS' if ok else 'FAIL'}"
        print(f"  {name:34s} {value!s:>10s}  {verdict}")


# ---- one relay process vs K (classroom serve nodes of a cascade) -----------------------------
def pin_pid(pid: int, cpus: Sequence[int]) -> None:
    """Pin every thread a running process has now (threads it starts later inherit)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


class NodeSet:
    """``count`` single-process ``classroom serve`` nodes (loadtests.cascade.NodeProcess,
    ``--workers 1``) on one private redis-server; classroom i goes to node i mod count."""

    def __init__(self, count: int, secret: str, work: Path, cpus: list[int] | None) -> None:
        from loadtests.cascade import NodeProcess, Redis

        self.redis = Redis()
        self.nodes = [NodeProcess(f"node{i}", self.redis.url, secret, work,
                                  {cpus[i % len(cpus)]} if cpus else None)
                      for i in range(count)]
        self.secret = secret

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes]

    @property
    def metrics_urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def url_of(self, i: int) -> str:
        return self.nodes[i % len(self.nodes)].url

    @property
    def teacher_url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()


class ServeWorkers:
    """``classroom serve --workers K`` as shipped: a supervisor, its own private
    redis-server, K workers on one public port (the kernel spreads the teacher's and the
    classrooms' sockets, SO_REUSEPORT). The workers are found in ``GET /api/nodes`` (pid,
    private ``link_url`` for /metrics) and worker i (by node id) pinned to CPU i mod CPUs."""

    def __init__(self, count: int, secret: str, work: Path, cpus: list[int] | None) -> None:
        from loadtests.cascade import free_port

        self.count, self.secret, self.cpus = count, secret, cpus
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.library = work / "library"
        self.log = work / "serve.log"
        self.proc: Any = None
        self.workers: list[dict[str, Any]] = []

    def start(self) -> None:
        import subprocess
        import urllib.request

        from loadtests.cascade import REPO
        from signaling.auth import mint_token

        env = {k: v for k, v in os.environ.items() if k != "CLASSROOM_REDIS_URL"}
        env.update(CLASSROOM_RECORDING="0", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve", "--workers", str(self.count),
                 "--host", "127.0.0.1", "--port", str(self.port), "--secret", self.secret,
                 "--library", str(self.library), "--no-demo", "--no-recording",
                 "--log-level", "warning"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                env=env)
        token = mint_token(self.secret, role="admin", lesson="*")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(self.url + "/api/nodes",
                                             headers={"Authorization": "Bearer " + token})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    nodes = json.load(resp)["nodes"]
                if len(nodes) == self.count:
                    self.workers = sorted(nodes, key=lambda n: n["id"])
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"classroom serve --workers {self.count} did not come up; "
                               f"see {self.log}")
        if self.cpus:
            for i, worker in enumerate(self.workers):
                pin_pid(worker["pid"], [self.cpus[i % len(self.cpus)]])

    def pids(self) -> list[int]:
        return [w["pid"] for w in self.workers]

    @property
    def metrics_urls(self) -> list[str]:
        return [w["link_url"] for w in self.workers]

    def url_of(self, i: int) -> str:
        return self.url

    @property
    def teacher_url(self) -> str:
        return self.url

    def stop(self) -> None:
        import subprocess

        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def run_nodes(count: int, args: argparse.Namespace, cores: Cores, log,
                    budget: float, how: str = "nodes") -> dict:
    """The capacity search on ``count`` relay processes: ``nodes`` (NodeSet: one node per
    ``classroom serve --workers 1``, classrooms split evenly, the teacher on the first) or
    ``serve`` (ServeWorkers: one ``classroom serve --workers count``). Relay process i is
    pinned to CPU i (mod the CPUs); beside one process the generator keeps the other CPUs
    to itself, beside more it shares every CPU with them."""
    cpus = sorted(os.sched_getaffinity(0) | set(cores.generator or []) | set(cores.relays or []))
    lesson = f"fanout-{count}"
    secret = "bench-" + os.urandom(24).hex()
    pin = cpus if cores.relays is not None else None
    if pin:
        pin_process(cpus[1:] if count == 1 else cpus)
    state: dict[str, Any] = {}

    async def start_relays() -> None:
        """Relays (a fresh folder and store each time) and the teacher on them."""
        work = Path(tempfile.mkdtemp(prefix="classroom-fanout-bench-"))
        relays = state["relays"] = (ServeWorkers if how == "serve" else NodeSet)(
            count, secret, work, pin)
        relays.start()
        teacher = state["teacher"] = LoopedTeacher(lesson)
        await teacher.publish(NodeRef(relays.teacher_url, secret), start=True)

    async def stop_relays() -> None:
        if "teacher" in state:
            await state.pop("teacher").close()
        if "relays" in state:
            state.pop("relays").stop()

    env = {"FANOUT_SECRET": secret, "FANOUT_LESSON": lesson}
    farm = Farm([Worker("signaling", env) for _ in range(args.client_procs)],
                lambda i: state["relays"].url_of(i), str)
    try:
        await farm.start()
        await start_relays()
        bench = Bench(f"{how}{count}", lambda: state["relays"].pids(),
                      state["relays"].metrics_urls, farm, lambda: state["teacher"].frames,
                      None, log, args.recover_seconds, lambda: state["teacher"].revive())

        async def reset() -> None:
            await farm.resize(0)
            await stop_relays()
            await start_relays()
            bench.metrics_urls = state["relays"].metrics_urls

        bench.reset = reset
        async with aiohttp.ClientSession() as session:
            base = await measure(bench, session, 0, args.warmup, args.search_window, "idle")
            found = await search(bench, session, args.search_start * count, args.warmup,
                                 args.search_window, budget, args.resolution, [base])
        found["idle"] = asdict(base)
        found["affinity"] = {"relays": [observed_affinity(p) for p in state["relays"].pids()],
                             "generator": observed_affinity()}
        found["processes"] = count
        found["how"] = {
            "nodes": f"{count} x classroom serve --workers 1 on one redis-server"
                     + (" (origin + edges, classrooms split evenly)" if count > 1 else ""),
            "serve": f"classroom serve --workers {count} (one port, its own redis-server)",
        }[how]
        log(f"  {found['how']}: holds {found['subscribers']} subscribers "
            f"(first failing: {found['first_failing']})")
        return found
    finally:
        await stop_relays()
        await farm.stop()
        cores.pin_generator()


class LoopedTeacher:
    """loadtests.cascade.Teacher with the looped 640x360 source (no encoder in the
    generator): publishes through signaling and starts the lesson."""

    def __init__(self, lesson: str) -> None:
        from loadtests.cascade import Teacher

        self._teacher = Teacher(lesson)
        self.source = LoopedTeacherSource()
        self.node: Any = None
        self.republished = 0

    @property
    def frames(self) -> int:
        return self.source.frames

    async def publish(self, node: Any, start: bool) -> None:
        from classroom_client import ClassroomClient
        from signaling.auth import mint_token

        self.node = node
        token = mint_token(node.secret, role="teacher", lesson=self._teacher.lesson, name="T")
        client = self._teacher.client = ClassroomClient(node.url, token)
        await client.connect()
        await self.source.prepare()
        pc = await client.publish(*self.source.tracks(), audio_bitrate=None)
        self.source.attach(pc)
        if start:
            await client.start_lesson()
        await client.wait_for(lambda: pc.connectionState == "connected", 20)

    async def revive(self) -> bool:
        """Publish again when the publishing connection died (see HttpTeacher.revive)."""
        client = self._teacher.client
        pc = client.pcs.get("publish") if client is not None else None
        if pc is not None and pc.connectionState == "connected":
            return False
        self.republished += 1
        await self._teacher.close()
        await self.publish(self.node, start=False)
        return True

    async def close(self) -> None:
        await self._teacher.close()
        await self.source.close()


async def compare_workers(args: argparse.Namespace, cores: Cores, log) -> dict:
    """One relay process vs ``--workers`` processes, both searched in this run."""
    one = await run_nodes(1, args, cores, log, args.search_seconds)
    many = await run_nodes(args.workers, args, cores, log, args.search_seconds,
                           args.workers_how)
    return {
        "one_process": one,
        "workers": many,
        "workers_count": args.workers,
        "workers_how": many["how"],
        "max_subscribers_one_process": one["subscribers"],
        "max_subscribers_workers": many["subscribers"],
        "workers_gain": (round(many["subscribers"] / one["subscribers"], 2)
                         if one["subscribers"] else None),
        "limited_by_one_process": one["limited_by"],
        "limited_by_workers": many["limited_by"],
    }


# ---- main ------------------------------------------------------------------------------------
async def main_async(args: argparse.Namespace) -> dict:
    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.monotonic()
    load_before = os.getloadavg()
    cores = Cores.split(pin=not args.no_pin)
    cores.pin_generator()
    log(f"relay CPUs {cores.relays or 'shared'}, generator CPUs {cores.generator or 'shared'}; "
        f"load average {[round(x, 2) for x in load_before]}")
    if args.workers:
        result = await compare_workers(args, cores, log)
        log(f"most subscribers delivered >= {DELIVERED}: one process "
            f"{result['max_subscribers_one_process']}, {args.workers} processes "
            f"{result['max_subscribers_workers']}")
    elif args.subscribers is not None:
        product, _ = await run_relay(args.mode, (args.subscribers,), args, cores, log)
        result = {"points": [asdict(p) for p in product]}
        if product:
            result.update({"p95_forward_ms": product[0].p95_all_ms,
                           "delivered_fps_ratio": product[0].delivered_min,
                           "cpu": product[0].cpu, "rss_mb": product[0].rss_mb})
    else:
        log(f"product relay (encode once, {args.send_path} send path):")
        product, found = await run_relay("product", PRODUCT_SWEEP, args, cores, log,
                                         search_from=args.search_start)
        log("baseline (aiortc MediaRelay, an encoder per subscriber):")
        baseline, base_found = await run_relay("baseline", BASELINE_SWEEP, args, cores, log,
                                               search_from=1)
        result = summarize(product, baseline)
        result["subscribers_per_core"] = found["subscribers"] if found else None
        result["baseline_subscribers_per_core"] = base_found["subscribers"] if base_found \
            else None
        result["capacity"] = found
        result["baseline_capacity"] = base_found
        print_report(result)
    if args.workers:  # each run's own, as read back from /proc, is in its "affinity"
        result["affinity"] = {
            "one_process": "node on the first CPU, generator on the others",
            "workers": "relay process i on CPU i (mod CPUs), the generator on every CPU",
            "how": "os.sched_setaffinity on each process (every thread)"}
    else:
        result["affinity"] = {"relays": cores.relays or "shared",
                              "generator": cores.generator or "shared",
                              "how": "os.sched_setaffinity (relay: before exec, every thread)",
                              "observed": OBSERVED_AFFINITY}
    result["delivered_threshold"] = DELIVERED
    result["source"] = f"{SOURCE[0]}x{SOURCE[1]} {SOURCE[2]} fps VP8 looped + Opus"
    result["receivers"] = "signaling" if args.workers else args.receivers
    result["send_path"] = args.send_path
    result["window_seconds"] = args.window
    result["warmup_seconds"] = args.warmup
    result["search_window_seconds"] = args.search_window
    result["cpu_count"] = os.cpu_count()
    # the machine is shared: a high load average means the figures include other work
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["elapsed_seconds"] = round(time.monotonic() - started, 1)
    log(f"load average before {result['loadavg_before']} after {result['loadavg_after']}, "
        f"{result['elapsed_seconds']} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Relay fan-out benchmark against MediaRelay.")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--subscribers", type=int, help="run one point with N subscribers")
    parser.add_argument("--mode", choices=("product", "baseline", "pinned"), default="product",
                        help="relay for --subscribers (default product)")
    parser.add_argument("--workers", type=int, default=0,
                        help="compare one relay process with this many (classroom serve nodes)")
    parser.add_argument("--workers-how", choices=("serve", "nodes"), default="serve",
                        help="the K processes: classroom serve --workers K (default), or K "
                             "classroom serve --workers 1 nodes on one redis-server")
    parser.add_argument("--window", type=float, default=12.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    parser.add_argument("--search-seconds", type=float, default=300.0,
                        help="time budget of each capacity search (0: no search)")
    parser.add_argument("--search-window", type=float, default=8.0,
                        help="measured seconds per point of the search")
    parser.add_argument("--search-start", type=int, default=75,
                        help="first N the search tries past the sweep (per node with --workers)")
    parser.add_argument("--recover-seconds", type=float, default=30.0,
                        help="wait at most this long before a point for demoted subscribers "
                             "to be back on the top tier")
    parser.add_argument("--resolution", type=float, default=0.05,
                        help="stop when the bracket is narrower than this share of N")
    parser.add_argument("--client-procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--receivers", choices=tuple(WORKER_MAINS), default="light",
                        help="subscribers: counted at the socket (default) or aiortc's "
                             "(signaling: for the subscriber processes of --workers)")
    parser.add_argument("--send-path", choices=("batched", "tasks"), default="batched",
                        help="product relay's send path (RelayConfig.batched_send)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin relay and generator")
    parser.add_argument("--profile", help="run the product relay under cProfile, stats here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(WORKER_MAINS[args.receivers]())
        return
    if args.workers == 1:
        parser.error("--workers must be at least 2 (it is compared with one process)")
    result = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
