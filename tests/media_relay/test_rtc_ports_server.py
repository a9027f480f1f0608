"""``classroom serve --rtc-ports P-P`` as a user runs it (a subprocess): the answer's
candidates and every UDP socket of the server process (``ss``) are on P; a second peer
connection gets ``media_failed`` at once; once the teacher leaves, the port serves the
next classroom. The peers are the headless client."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from classroom_client import ClassroomClient
from classroom_client.client import ProtocolError
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from tests.e2e.conftest import ServerProcess
from tests.helpers import eventually
from tests.udp_ports import candidate_ports, free_udp_range

pytestmark = pytest.mark.timeout(90)


def server_udp_ports(pid: int) -> set[int]:
    """Local ports of the UDP sockets ``ss`` lists for process ``pid``."""
    out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
            if f"pid={pid}," in line}


@pytest.fixture
async def one_port_server():
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is missing")
    low, high = free_udp_range(1)
    srv = ServerProcess(["--rtc-ports", f"{low}-{high}"],
                        Path(tempfile.mkdtemp(prefix="classroom-ports-")))
    await asyncio.to_thread(srv.start)
    yield srv, low
    await asyncio.to_thread(srv.stop)


async def test_served_media_stays_in_the_range_and_a_full_range_says_media_failed(
        one_port_server) -> None:
    srv, port = one_port_server
    lesson = "ports-1"
    teacher = ClassroomClient(srv.base_url, srv.token("teacher", lesson))
    room = ClassroomClient(srv.base_url, srv.token("classroom", lesson, name="一班"))
    try:
        await teacher.connect()
        pc = await teacher.publish(SyntheticVideoTrack(256, 144), SyntheticAudioTrack())
        await teacher.start_lesson()
        assert set(candidate_ports(pc.remoteDescription.sdp)) == {port}
        await teacher.wait_for(lambda: pc.connectionState == "connected", 15)
        assert server_udp_ports(srv.proc.pid) == {port}

        await room.connect()
        started = time.monotonic()
        with pytest.raises(ProtocolError) as refused:
            await room.subscribe()
        error = refused.value.body
        assert error["code"] == "media_failed" and error["ref"] == "offer"
        assert f"{port}-{port}" in error["message"]
        assert time.monotonic() - started < 5
        assert server_udp_ports(srv.proc.pid) == {port}

        await teacher.close()  # the teacher leaves: the relay closes its peer connection
        await eventually(lambda: not server_udp_ports(srv.proc.pid), 10)
        sub = await room.subscribe()
        assert set(candidate_ports(sub.remoteDescription.sdp)) == {port}
        await room.wait_for(lambda: sub.connectionState == "connected", 15)
    finally:
        await room.close()
        await teacher.close()
