"""Two signaling processes on one Redis share a lesson; Redis outages are survived."""


import aiohttp
import pytest

from classroom_client import ClassroomClient, ProtocolError
from tests.helpers import RedisServer, eventually, start_server

pytestmark = pytest.mark.redis


async def test_two_nodes_share_lesson_and_roster(redis_url):
    a = await start_server(redis_url=redis_url, presence_ttl=2.0, roster_poll=0.5)
    b = await start_server(secret=a.secret, redis_url=redis_url, presence_ttl=2.0,
                           roster_poll=0.5)
    teacher = ClassroomClient(a.base_url, a.token("teacher", name="T"))
    room = ClassroomClient(b.base_url, b.token("classroom", name="R"))
    await teacher.connect()
    await room.connect()
    await teacher.wait_for(lambda: {p["name"] for p in teacher.roster} == {"T", "R"})
    await room.wait_for(lambda: {p["name"] for p in room.roster} == {"T", "R"})
    await teacher.start_lesson()
    await room.wait_for(lambda: room.lesson_state == "live")
    # node B dies without saying goodbye: its classroom expires from A's roster by TTL
    await b.node.hub.close()  # stops refreshing presence, like a dead process
    await teacher.wait_for(lambda: [p["name"] for p in teacher.roster] == ["T"], timeout=10)
    await teacher.close()
    await room.close()
    await b.close()
    await a.close()


async def test_redis_going_away_and_coming_back():
    redis = RedisServer()
    redis.start()
    srv = await start_server(redis_url=redis.url, presence_ttl=2.0, roster_poll=0.5)
    try:
        teacher = ClassroomClient(srv.base_url, srv.token("teacher"))
        await teacher.connect()
        redis.stop()
        async with aiohttp.ClientSession() as http:
            async def not_ready():
                return (await http.get(srv.base_url + "/readyz")).status == 503
            await eventually(not_ready, timeout=10)
            with pytest.raises(ProtocolError) as err:
                await teacher.start_lesson()
            assert err.value.code == "store_unavailable"
            newcomer = ClassroomClient(srv.base_url, srv.token("classroom"))
            with pytest.raises(ProtocolError) as err:
                await newcomer.connect()
            assert err.value.code == "store_unavailable"
            await newcomer.close()
            assert (await http.get(srv.base_url + "/healthz")).status == 200

            redis.start()  # same port, empty data

            async def ready():
                return (await http.get(srv.base_url + "/readyz")).status == 200
            await eventually(ready, timeout=15)
        room = ClassroomClient(srv.base_url, srv.token("classroom", name="back"))
        await room.connect()
        # Redis came back empty; the teacher's socket lived through it and still works
        await teacher.start_lesson()
        await room.wait_for(lambda: room.lesson_state == "live", timeout=10)
        await teacher.wait_for(lambda: any(p["name"] == "back" for p in teacher.roster),
                               timeout=10)
        await room.close()
        await teacher.close()
    finally:
        await srv.close()
        redis.stop()
