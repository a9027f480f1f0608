"""`kill -9` of the server mid-lesson: the restarted server recovers and packages the recording."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from classroom_client import ClassroomClient
from recording.segments import read_index
from signaling.auth import mint_token
from tests.helpers import free_port
from tests.recording.conftest import decode_counts, teacher_publishing

SECRET = "crash-test-secret-0123456789abcdef"
LESSON = "crash-1"


class ServerProcess:
    def __init__(self, library: Path, log: Path) -> None:
        self.library = library
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve", "--port", str(self.port),
                 "--secret", SECRET, "--library", str(self.library), "--no-demo"],
                stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[2],
                # small chunks: some of this short lesson is packaged before the kill
                env={**os.environ, "CLASSROOM_PACKAGE_CHUNK_SECONDS": "2"})
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                try:
                    async with http.get(self.base_url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def recorded_seconds(directory: Path) -> float:
    segments = read_index(directory)
    return (segments[-1].end_ms - segments[0].start_ms) / 1000 if segments else 0.0


async def api(base: str, path: str, token: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as r:
            return await r.json()


async def test_sigkill_mid_lesson_recovers_recording(tmp_path):
    library = tmp_path / "library"
    first = ServerProcess(library, tmp_path / "server1.log")
    await first.start()
    second = None
    teacher = None
    try:
        teacher = await teacher_publishing(first.base_url, mint_token(
            SECRET, role="teacher", lesson=LESSON, name="李老师", school="城区二小"))
        await teacher.start_lesson()
        started = await teacher.next_message(
            "recording", where=lambda m: m["state"] == "recording", timeout=20)
        t0 = time.monotonic()
        rid = started["recording_id"]
        directory = library / "recordings" / rid
        # wait (with a deadline) until several segments are safely on disk, then a bit more
        deadline = time.monotonic() + 40
        while recorded_seconds(directory) < 4.0 or not (directory / "chunks" / "c-00001"
                                                         / "chunk.json").exists():
            assert time.monotonic() < deadline, "recording did not progress"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        first.kill()
        expected = time.monotonic() - t0
        await teacher.close()
        teacher = None
        assert list((directory / "segments").glob("*.part")), "a segment was being written"

        second = ServerProcess(library, tmp_path / "server2.log")
        await second.start()
        # the teacher ends the lesson: a store that kept it live would hold the recording
        # for the teacher's media (a new part); the memory store forgot it (packaged now)
        closer = ClassroomClient(second.base_url, mint_token(
            SECRET, role="teacher", lesson=LESSON, name="李老师", school="城区二小"))
        await closer.connect()
        await closer.send({"type": "end-lesson"})
        admin = mint_token(SECRET, role="admin", lesson="*")
        deadline = time.monotonic() + 90
        while True:
            record = await api(second.base_url, f"/api/recordings/{rid}", admin)
            if record.get("state") in ("ready", "failed"):
                break
            assert time.monotonic() < deadline, record
            await asyncio.sleep(0.25)
        assert record["state"] == "ready", record
        assert record["recovered"] is True
        # what the background worker packaged before the kill was kept and reused
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        assert meta["chunks"]["reused"] >= 1, meta["chunks"]
        print(f"recovered {record['duration']:.2f} s of {expected:.2f} s before the kill")
        # lost at most a couple of seconds before the kill (the torn segment is salvaged)
        assert expected - 3.0 <= record["duration"] <= expected + 1.0, (
            record["duration"], expected)
        replay = directory / "replay"
        frames, samples, video_seconds = decode_counts(replay / "lesson.mp4")
        assert video_seconds >= expected - 3.5 and frames > 2 * expected
        assert samples / 48000 >= expected - 3.5
        frames, samples, _ = decode_counts(replay / "hls" / "audio" / "index.m3u8")
        assert samples / 48000 >= expected - 3.5
        # the recovered recording is listed for the lesson's school
        student = mint_token(SECRET, role="student", lesson=LESSON, school="城区二小")
        listed = await api(second.base_url, "/api/recordings", student)
        assert [r["id"] for r in listed["recordings"]] == [rid]
        await closer.close()
    finally:
        if teacher is not None:
            await teacher.close()
        first.kill()
        if second is not None:
            second.kill()
