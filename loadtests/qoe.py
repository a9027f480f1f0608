"""Quality-report ingest: N classrooms report their getStats() every 10 s; what does it cost?

    python -m loadtests.qoe --classrooms 500 --json out.json

The server runs in a process of its own (``python -m signaling.cli serve --no-recording``,
the memory store). This process opens N classroom WebSockets (aiohttp, real classroom
tokens, ``--lessons`` lessons with one teacher socket each, ``--schools`` distinct school
claims) and then, in the same run and on the same sockets:

1. **idle** for ``--duration`` s: the sockets stay open, nothing is sent;
2. **reports**: every classroom sends a ``quality`` report every 10 s (cumulative totals
   as the pages send them; first reports spread uniformly over the first interval); the
   first interval (every classroom's first report and first tile mark: a lesson's joins)
   is measured on its own (``ingest_cpu_first_interval``), then ``--duration`` s of steady
   reporting (``ingest_cpu``);
3. **scrapes**: ``/metrics`` fetched 20 times, 0.5 s apart (outside the CPU phases).

``ingest_cpu`` is the server process's CPU (utime + stime from /proc) in cores during the
steady reports minus during idle: the cores attributable to the reports (target <= 0.02).
``scrape_ms`` is the p95 of the ``/metrics`` GET times (target <= 50). ``metrics_series``
counts the exposition's sample lines (all of them, and the ``classroom_client_*`` ones) at
the end of the run; a second, short run with ``--compare-schools`` schools (one round of
reports, no idle phase) shows the count is bounded as schools grow (the school label keeps
at most 200 values, then ``other``). Also written: reports sent/accepted/refused, errors,
per-report server CPU (us), the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
import uuid
from typing import Any

import aiohttp

from signaling.auth import mint_token

from . import quiz_burst
from .quiz_burst import percentile

INTERVAL = 10.0
SCRAPE_EVERY = 0.5
SCRAPES = 20
TARGET_CPU = 0.02
TARGET_SCRAPE_MS = 50.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


class Server(quiz_burst.Server):
    """The same server process as the quiz burst's, without recording."""

    def __init__(self) -> None:
        super().__init__(None, name="qoe", extra_args=("--no-recording",))

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

class Peer:
    """One socket: a classroom that reports, or a teacher that hears the tile marks."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.errors: list[dict[str, Any]] = []
        self.marks = 0
        self.reader: asyncio.Task[None] | None = None
        self.epoch = uuid.uuid4().hex[:12]
        self.seq = 0
        self.totals = {"frames_received": 0, "frames_decoded": 0, "freezes": 0,
                       "freeze_ms": 0, "video_lost": 0, "audio_samples": 0,
                       "audio_concealed": 0, "audio_lost": 0}
        self.rng = random.Random(self.epoch)

    async def connect(self, http: aiohttp.ClientSession, base: str) -> None:
        self.ws = await http.ws_connect(base.replace("http", "ws") + "/ws", heartbeat=None,
                                        max_msg_size=0)
        await self.ws.send_str(json.dumps({"type": "hello", "token": self.token}))
        while True:
            msg = json.loads((await self.ws.receive(timeout=30)).data)
            if msg.get("type") == "welcome":
                break
            if msg.get("type") == "error":
                raise RuntimeError(f"hello refused: {msg}")
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            if msg.get("type") == "error":
                self.errors.append(msg)
            elif msg.get("type") == "quality-mark":
                self.marks += 1

    def report(self) -> dict[str, Any]:
        """The next cumulative report of a classroom TV (mostly healthy, some freezes)."""
        rng, t = self.rng, self.totals
        self.seq += 1
        frames = rng.randint(280, 300)
        t["frames_received"] += frames
        t["frames_decoded"] += frames - rng.randint(0, 1)
        if rng.random() < 0.2:
            t["freezes"] += 1
            t["freeze_ms"] += rng.randint(150, 900)
        t["video_lost"] += rng.randint(0, 5)
        t["audio_samples"] += 480_000
        t["audio_concealed"] += rng.choice((0, 0, 0, 480, 4800))
        t["audio_lost"] += rng.randint(0, 2)
        return {"type": "quality", "epoch": self.epoch, "seq": self.seq,
                "interval_ms": INTERVAL * 1000, "tier": rng.choice(("high",) * 8 + ("mid", "low")),
                "video_tracks": 1, "audio_tracks": 1, **t,
                "jitter_audio_ms": round(rng.uniform(30, 120), 1),
                "jitter_video_ms": round(rng.uniform(40, 200), 1),
                "rtt_ms": round(rng.uniform(5, 150), 1)}

    async def report_loop(self, until: float, sent: list[int], first_within: float) -> None:
        assert self.ws is not None
        await asyncio.sleep(self.rng.uniform(0, first_within))
        while time.monotonic() < until:
            await self.ws.send_str(json.dumps(self.report()))
            sent[0] += 1
            await asyncio.sleep(INTERVAL)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


async def scrape(http: aiohttp.ClientSession, base: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    async with http.get(base + "/metrics") as r:
        text = await r.text()
    return (time.perf_counter() - t0) * 1000, text


def series_counts(text: str) -> dict[str, int]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    quality = [ln for ln in lines if ln.startswith("classroom_client_")]
    schools = {ln.split('school="', 1)[1].split('"', 1)[0] for ln in quality if 'school="' in ln}
    return {"all": len(lines), "classroom_client": len(quality), "school_labels": len(schools)}


def reports_by_result(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for ln in text.splitlines():
        if ln.startswith("classroom_client_reports_total{"):
            result = ln.split('result="', 1)[1].split('"', 1)[0]
            out[result] = out.get(result, 0.0) + float(ln.rsplit(" ", 1)[1])
    return out


async def one_run(args: argparse.Namespace, schools: int, duration: float, idle: bool
                  ) -> dict[str, Any]:
    server = Server()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    peers: list[Peer] = []
    try:
        await server.wait_healthy(http)
        lessons = [f"qoe-{i}" for i in range(args.lessons)]
        teachers = [Peer(mint_token(server.secret, role="teacher", lesson=lesson,
                                    sub=f"t-{i}", name=f"老师{i}", school="city-school"))
                    for i, lesson in enumerate(lessons)]
        rooms = [Peer(mint_token(server.secret, role="classroom", lesson=lessons[i % len(lessons)],
                                 sub=f"room-{i}", name=f"教室{i}",
                                 school=f"school-{i % schools:04d}"))
                 for i in range(args.classrooms)]
        peers = teachers + rooms
        sem = asyncio.Semaphore(100)

        async def connect(p: Peer) -> None:
            async with sem:
                await p.connect(http, server.base)

        t0 = time.perf_counter()
        await asyncio.gather(*(connect(p) for p in peers))
        print(f"{len(rooms)} classrooms + {len(teachers)} teachers connected in "
              f"{time.perf_counter() - t0:.1f}s ({schools} schools)", file=sys.stderr)
        await asyncio.sleep(3)  # joins' rosters settle
        out: dict[str, Any] = {"schools": schools, "classrooms": len(rooms),
                               "lessons": len(lessons)}
        if idle:
            c0, w0 = server.cpu(), time.monotonic()
            await asyncio.sleep(duration)
            c1, w1 = server.cpu(), time.monotonic()
            out["idle_cpu"] = (c1 - c0) / (w1 - w0)
        sent = [0]
        c0, w0 = server.cpu(), time.monotonic()
        warm = INTERVAL if idle else 0.0  # the first interval: every classroom's first report
        until = w0 + warm + duration
        loops = [asyncio.ensure_future(r.report_loop(until, sent, min(INTERVAL, duration)))
                 for r in rooms]
        await asyncio.sleep(max(0.0, w0 + warm - time.monotonic()))
        cw, ww, sent_warm = server.cpu(), time.monotonic(), sent[0]
        await asyncio.gather(*loops)
        c1, w1 = server.cpu(), time.monotonic()
        report_cpu = (c1 - cw) / (w1 - ww)
        if idle:
            out["first_interval_cpu"] = (cw - c0) / (ww - w0)
        await asyncio.sleep(1)  # the last reports land
        # scrapes after the CPU phases (Prometheus scrapes idle and busy nodes alike)
        scrapes: list[float] = []
        for _ in range(SCRAPES):
            ms, text = await scrape(http, server.base)
            scrapes.append(ms)
            await asyncio.sleep(SCRAPE_EVERY)
        out.update(report_cpu=report_cpu, reports_sent=sent[0],
                   reports=reports_by_result(text), series=series_counts(text),
                   scrape_ms_p95=percentile(scrapes, 0.95),
                   scrape_ms_max=max(scrapes), scrapes=len(scrapes),
                   errors=sum(len(p.errors) for p in peers),
                   error_codes=sorted({e.get("code", "") for p in peers for e in p.errors}),
                   marks_to_teachers=sum(t.marks for t in teachers))
        if idle:
            out["ingest_cpu"] = report_cpu - out["idle_cpu"]
            out["ingest_cpu_first_interval"] = out["first_interval_cpu"] - out["idle_cpu"]
            out["reports_measured"] = sent[0] - sent_warm
            out["server_cpu_us_per_report"] = (
                (c1 - cw - out["idle_cpu"] * (w1 - ww)) / max(1, sent[0] - sent_warm) * 1e6)
        return out
    finally:
        for p in peers:
            await p.close()
        await http.close()
        server.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    need = (args.classrooms + args.lessons) * 2 + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    main = await one_run(args, args.schools, args.duration, idle=True)
    compare = None
    if args.compare_schools:
        compare = await one_run(args, args.compare_schools, INTERVAL + 2, idle=False)
    series = {f"schools_{main['schools']}": main["series"]}
    if compare is not None:
        series[f"schools_{compare['schools']}"] = compare["series"]
    result = {
        "classrooms": args.classrooms,
        "lessons": args.lessons,
        "duration_s": args.duration,
        "interval_s": INTERVAL,
        "ingest_cpu": round(main["ingest_cpu"], 4),
        "ingest_cpu_first_interval": round(main["ingest_cpu_first_interval"], 4),
        "reports_measured": main["reports_measured"],
        "idle_cpu": round(main["idle_cpu"], 4),
        "report_cpu": round(main["report_cpu"], 4),
        "server_cpu_us_per_report": round(main["server_cpu_us_per_report"], 1),
        "reports_sent": main["reports_sent"],
        "reports": main["reports"],
        "errors": main["errors"],
        "error_codes": main["error_codes"],
        "marks_to_teachers": main["marks_to_teachers"],
        "metrics_series": series,
        "scrape_ms": round(main["scrape_ms_p95"], 1),
        "scrape_ms_max": round(main["scrape_ms_max"], 1),
        "scrapes": main["scrapes"],
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "cpus": os.cpu_count(),
    }
    result["targets_met"] = (result["ingest_cpu"] <= TARGET_CPU
                             and result["scrape_ms"] <= TARGET_SCRAPE_MS
                             and result["errors"] == 0)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classrooms", type=int, default=500)
    p.add_argument("--lessons", type=int, default=50)
    p.add_argument("--schools", type=int, default=500)
    p.add_argument("--compare-schools", type=int, default=50,
                   help="a second short run with this many schools (0: none)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of each phase (idle, then reports)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
