"""Redis going away (killed), freezing (SIGSTOP) and coming back empty (issue 18 item 5).

Each test starts its own redis-server so it may kill, freeze and restart it on the same
port; none of them mocks Redis.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from classroom_client import ClassroomClient, ProtocolError
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from tests.helpers import RedisServer, eventually, start_server

pytestmark = pytest.mark.redis


@pytest.fixture
def redis():
    server = RedisServer()
    server.start()
    yield server
    if server.proc is not None:
        server.proc.send_signal(signal.SIGCONT)  # never leave a frozen one behind
    server.stop()


@pytest.fixture
async def srv(redis):
    server = await start_server(redis_url=redis.url, presence_ttl=3.0, roster_poll=0.5)
    yield server
    await server.close()


def freeze(redis: RedisServer) -> None:
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)


def thaw(redis: RedisServer) -> None:
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGCONT)


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def wait_ready(http: aiohttp.ClientSession, srv, want: int = 200) -> None:
    async def ready() -> bool:
        return await status(http, srv.base_url + "/readyz") == want
    await eventually(ready, timeout=15)


async def hellos(srv, n: int, lesson: str = "math-1") -> list[ClassroomClient | str]:
    """``n`` concurrent hellos: each a connected client, or the error code it got."""
    async def one(i: int) -> ClassroomClient | str:
        client = ClassroomClient(srv.base_url, srv.token("classroom", lesson, name=f"r{i}"))
        try:
            await client.connect(timeout=10)
            return client
        except ProtocolError as err:
            await client.close()
            return err.code
    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def close_all(clients) -> None:
    await asyncio.gather(*(c.close() for c in clients if isinstance(c, ClassroomClient)))


async def test_api_answers_503_store_unavailable_while_redis_is_down(redis, srv):
    admin = {"Authorization": "Bearer " + srv.token("admin", "*")}
    teacher = {"Authorization": "Bearer " + srv.token("teacher")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.post(srv.base_url + "/api/lessons", json={"id": "math-1"},
                             headers=admin) as resp:
            assert resp.status == 201
        redis.stop()
        for method, path, headers in (("GET", "/api/lessons", admin),
                                      ("GET", "/api/lessons/math-1", teacher),
                                      ("POST", "/api/lessons", admin)):
            t0 = time.monotonic()
            async with http.request(method, srv.base_url + path, headers=headers,
                                    json={"id": "x-2"} if method == "POST" else None) as resp:
                body = await resp.json()
            assert resp.status == 503, (path, resp.status, body)
            assert body["error"]["code"] == "store_unavailable"
            assert time.monotonic() - t0 < 2.0, "an outage is reported, not waited out"


async def test_frozen_redis_does_not_hold_up_a_sockets_other_messages(redis, srv):
    teacher = ClassroomClient(srv.base_url, srv.token("teacher", name="T"))
    await teacher.connect()
    try:
        freeze(redis)
        t0 = time.monotonic()
        mark = len(teacher.messages)
        await teacher.send({"type": "start-lesson"})  # needs the store: waits on Redis
        await teacher.send({"type": "ping", "ts": 1})  # does not
        await teacher.next_message("pong", since=mark, timeout=5)
        pong_after = time.monotonic() - t0
        err = await teacher.next_message("error", since=mark, timeout=5,
                                         where=lambda m: m.get("ref") == "start-lesson")
        err_after = time.monotonic() - t0
        assert pong_after < 0.5, f"ping waited {pong_after:.2f}s behind a frozen store"
        assert err["code"] == "store_unavailable"
        assert err_after < 2.5, f"a store call waited {err_after:.2f}s"
        thaw(redis)
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, srv)
        await teacher.start_lesson()  # the socket is still usable
    finally:
        thaw(redis)
        await teacher.close()


async def test_no_request_fails_once_readyz_is_green_after_kill_and_freeze(redis, srv):
    admin = {"Authorization": "Bearer " + srv.token("admin", "*")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        warm = await hellos(srv, 30)  # many pooled connections
        assert all(isinstance(c, ClassroomClient) for c in warm), warm
        # killed and restarted empty on the same port
        redis.stop()
        await wait_ready(http, srv, want=503)
        redis.start()
        await wait_ready(http, srv)
        after_kill = await hellos(srv, 30)
        async with http.get(srv.base_url + "/api/lessons", headers=admin) as resp:
            assert resp.status == 200
        # frozen while hellos are in flight (they time out), then thawed
        freeze(redis)
        during = await hellos(srv, 30)
        assert set(c for c in during if isinstance(c, str)) <= {"store_unavailable"}
        thaw(redis)
        await wait_ready(http, srv)
        after_freeze = await hellos(srv, 30)
        try:
            for name, batch in (("kill", after_kill), ("freeze", after_freeze)):
                failed = [c for c in batch if isinstance(c, str)]
                assert not failed, f"{len(failed)} of 30 hellos failed after {name}: {failed}"
        finally:
            for batch in (warm, after_kill, during, after_freeze):
                await close_all(batch)


async def test_lesson_lost_by_redis_is_rebuilt_from_live_media_and_sockets(redis, srv):
    teacher = ClassroomClient(srv.base_url, srv.token("teacher", name="T", school="city"))
    room = ClassroomClient(srv.base_url, srv.token("classroom", name="A"))
    late = None
    headers = {"Authorization": "Bearer " + srv.token("teacher", name="T")}
    try:
        await teacher.connect()
        await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())
        await teacher.start_lesson()
        await room.connect()
        await room.subscribe()
        await room.wait_for(lambda: room.video_frames >= 10, timeout=20)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            redis.stop()
            await wait_ready(http, srv, want=503)
            redis.start()  # empty: the lesson record and presence are gone
            back = time.monotonic()

            async def rebuilt() -> bool:
                async with http.get(srv.base_url + "/api/lessons/math-1",
                                    headers=headers) as resp:
                    if resp.status != 200:
                        return False
                    body = await resp.json()
                return body["state"] == "live" and {p["name"] for p in body["roster"]} == {
                    "T", "A"}
            await eventually(rebuilt, timeout=10)
            took = time.monotonic() - back
            assert took <= 2.0, f"lesson and roster right {took:.2f}s after Redis came back"
        late = ClassroomClient(srv.base_url, srv.token("classroom", name="late"))
        welcome = await late.connect()
        assert welcome["lesson_state"] == "live"
        assert welcome["lesson_info"]["teacher"] == "T"
        assert room.lesson_state == "live" and teacher.lesson_state == "live"
    finally:
        for c in (late, room, teacher):
            if c is not None:
                await c.close()


class _Socket:
    """The little of a session the hub needs (lessons.LocalPeer)."""

    def __init__(self, peer_id: str) -> None:
        from signaling.store import PresenceRecord
        self.peer_id, self.lesson_id = peer_id, "math-1"
        self.presence = PresenceRecord(peer_id=peer_id, lesson="math-1", role="classroom")

    async def send(self, message: dict) -> None:
        pass


async def test_a_socket_leaving_during_a_presence_refresh_leaves_the_roster(redis):
    from signaling.lessons import LessonHub
    from signaling.store.redis import RedisStore

    hub = LessonHub(RedisStore(redis.url))
    await hub.start()
    try:
        sockets = [_Socket(f"p{i:02d}") for i in range(30)]
        for s in sockets:
            await hub.join(s)
        # the refresh walks the peers one put at a time; the last one leaves meanwhile
        refresh = asyncio.ensure_future(hub._put_local_presence())
        await asyncio.sleep(0)
        await hub.leave(sockets[-1])
        await refresh
        names = {r.peer_id for r in await hub.store.roster("math-1")}
        assert "p29" not in names, "a closed socket was put back into the roster"
        assert len(names) == 29
    finally:
        await hub.close()
