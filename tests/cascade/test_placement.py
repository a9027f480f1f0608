"""Placement (issue 14, item 4): a node over ``--max-subscribers`` sends a new classroom's
socket to the least-loaded live node with room (``redirect``), on one real redis-server.

* Two ``classroom serve`` processes: A ``--max-subscribers 1``, B free. The teacher and a
  first classroom on A; the second classroom that asks A is redirected to B, follows (the
  headless client), and decodes there what A encodes (B pulls it over the cascade).
* Both full: no redirect (the classroom is accepted where it asked, logged and counted); a
  redirected hello and a reconnect are accepted by a full node (no loop, placed stays).
* Hostile records and hello fields: a node record whose URL is not a plain http(s) base is
  never a redirect's target nor in a page's CSP; bad ``redirected``/``reconnect`` refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from classroom_client import ClassroomClient
from classroom_client.client import ProtocolError
from classroom_client.media import SyntheticAudioTrack, SyntheticVideoTrack
from signaling.placement import safe_base, ws_url_of
from tests.e2e.conftest import ServerProcess
from tests.helpers import RunningServer, start_server

pytestmark = pytest.mark.redis

LESSON = "place-1"


def _metric(text: str, name: str, **labels: str) -> float:
    """A sample of a Prometheus text page (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not want and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _sees(a: ServerProcess, b: ServerProcess, timeout: float = 10.0) -> None:
    """Wait until A's placement has read B's node record (its list is refreshed every
    2 s): A's pages then name B's socket in their CSP."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(a.base_url + f"/class/{LESSON}") as resp:
                if b.base_url.replace("http", "ws", 1) in resp.headers["Content-Security-Policy"]:
                    return
            assert time.monotonic() < deadline, "A never read B's node record"
            await asyncio.sleep(0.1)


async def test_second_classroom_on_a_full_node_is_redirected_and_decodes_there(redis_url):
    work = Path(tempfile.mkdtemp(prefix="classroom-place-"))
    a = ServerProcess(["--redis-url", redis_url, "--max-subscribers", "1"], work / "a")
    b = ServerProcess(["--redis-url", redis_url], work / "b")
    b.secret = a.secret  # one district: one secret
    for srv, sub in ((a, "a"), (b, "b")):
        (work / sub).mkdir()
        srv.env["CLASSROOM_WORKERS"] = "1"  # one node each (the limit is per node)
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    await _sees(a, b)
    teacher = ClassroomClient(a.base_url, a.token("teacher", LESSON, name="T"))
    first = ClassroomClient(a.base_url, a.token("classroom", LESSON, name="A1"))
    second = ClassroomClient(a.base_url, a.token("classroom", LESSON, name="B1",
                                                 school="村小"))
    try:
        await teacher.connect()
        await teacher.start_lesson()
        await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())
        await first.connect()
        assert not first.redirects and first.base_url == a.base_url
        started = time.monotonic()
        await second.connect()
        [redirect] = second.redirects
        assert redirect["reason"] == "subscribers"
        assert redirect["url"] == b.base_url  # B's record: its public base URL
        assert redirect["ws_url"] == b.base_url.replace("http", "ws", 1) + "/ws"
        assert second.base_url == b.base_url
        await second.subscribe()
        await second.wait_for(lambda: second.video_frames >= 20 and second.audio_frames >= 20,
                              timeout=20)
        print(f"redirected classroom decoding on B {time.monotonic() - started:.2f} s "
              "after its hello on A")
        async with aiohttp.ClientSession() as http:
            async with http.get(a.base_url + "/metrics") as resp:
                metrics_a = await resp.text()
            async with http.get(a.base_url + "/api/nodes", headers={
                    "Authorization": "Bearer " + a.token("admin", "*")}) as resp:
                nodes = (await resp.json())["nodes"]
        assert _metric(metrics_a, "classroom_redirects_total", reason="subscribers") == 1.0
        by_url = {n["http_url"]: n for n in nodes}
        assert by_url[a.base_url]["limits"] == {"max_subscribers": 1, "max_cpu": None}
        assert by_url[b.base_url]["limits"] == {"max_subscribers": None, "max_cpu": None}
        assert redirect["node"] == by_url[b.base_url]["id"]
        # the token never went into a URL: the redirect carries none, the client kept its own
        assert second.token not in json.dumps(redirect)
    finally:
        for client in (second, first, teacher):
            await client.close()
        for srv in (a, b):
            srv.stop()


async def _two_full_nodes(redis_url: str) -> tuple[RunningServer, RunningServer]:
    a = await start_server(redis_url=redis_url, node_id="full-a", max_subscribers=1)
    b = await start_server(secret=a.secret, redis_url=redis_url, node_id="full-b",
                           max_subscribers=1)
    return a, b


def _feature(srv: RunningServer, name: str):  # noqa: ANN202 - a test's shortcut
    return next(f for f in srv.node.features if f.name == name)


def _freeze(*servers: RunningServer) -> None:
    """Stop the nodes' own heartbeats and node-list reads: the test sets what they say."""
    for srv in servers:
        for task in (_feature(srv, "nodes")._task, _feature(srv, "placement")._loop):  # noqa: SLF001
            if task is not None:
                task.cancel()


async def _fresh_records(*servers: RunningServer) -> None:
    """Every node writes its record now and every placement reads them now (the beat and
    the node list are 2 s apart otherwise)."""
    for srv in servers:
        await _feature(srv, "nodes").beat()
    for srv in servers:
        await _feature(srv, "placement")._read_peers()  # noqa: SLF001


async def test_no_loop_when_every_node_is_full(redis_url, caplog):
    a, b = await _two_full_nodes(redis_url)
    clients = [ClassroomClient(a.base_url, a.token("classroom", LESSON, name="A1")),
               ClassroomClient(b.base_url, b.token("classroom", LESSON, name="B1"))]
    try:
        for client in clients:
            await client.connect()
        await _fresh_records(a, b)
        no_room = _counter("classroom_placement_over_limit_total", reason="no_room")
        redirects = _counter("classroom_redirects_total", reason="subscribers")
        third = ClassroomClient(a.base_url, a.token("classroom", LESSON, name="A2"))
        clients.append(third)
        with caplog.at_level(logging.WARNING, logger="signaling.placement"):
            await third.connect()  # welcomed here: no node has room
        assert not third.redirects and third.base_url == a.base_url
        assert _counter("classroom_placement_over_limit_total", reason="no_room") == no_room + 1
        assert _counter("classroom_redirects_total", reason="subscribers") == redirects
        assert any("no live node has room" in r.getMessage() for r in caplog.records)

        # a socket another node sent here is accepted although this node is full
        redirected = _counter("classroom_placement_over_limit_total", reason="redirected")
        sent = ClassroomClient(b.base_url, b.token("classroom", LESSON, name="B2"))
        clients.append(sent)
        sent.redirects.append({"type": "redirect"})  # as after following one: redirected 1
        await sent.connect()
        assert sent.base_url == b.base_url
        assert _counter("classroom_placement_over_limit_total",
                        reason="redirected") == redirected + 1

        # teachers are never redirected (their node becomes the lesson's origin)
        teacher = ClassroomClient(a.base_url, a.token("teacher", LESSON, name="T"))
        clients.append(teacher)
        await teacher.connect()
        assert not teacher.redirects
    finally:
        for client in clients:
            await client.close()
        await b.close()
        await a.close()


async def _hello(url: str, hello: dict) -> dict:
    """One raw hello's reply (the socket closed after it)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url.replace("http", "ws", 1) + "/ws") as ws:
        await ws.send_str(json.dumps(hello))
        return json.loads((await ws.receive(timeout=5)).data)


async def test_a_reconnect_stays_and_a_free_node_takes_the_new_ones(redis_url):
    a = await start_server(redis_url=redis_url, node_id="busy-a", max_subscribers=1)
    b = await start_server(secret=a.secret, redis_url=redis_url, node_id="free-b")
    first = ClassroomClient(a.base_url, a.token("classroom", LESSON, name="A1"))
    try:
        await first.connect()
        await _fresh_records(a, b)
        token = a.token("classroom", LESSON, name="A1")
        reply = await _hello(a.base_url, {"type": "hello", "token": token, "reconnect": True})
        assert reply["type"] == "welcome"  # placed here before: stays
        reply = await _hello(a.base_url, {"type": "hello", "token": token})
        assert reply["type"] == "redirect" and reply["node"] == "free-b", reply
        assert reply["url"] == b.base_url
        # the least-loaded node with room, counting the redirects sent since its last beat
        b_record = next(n for n in await _feature(a, "nodes").board.nodes()
                        if n["id"] == "free-b")
        assert b_record["limits"]["max_subscribers"] is None
    finally:
        await first.close()
        await b.close()
        await a.close()


async def test_a_node_over_its_cpu_limit_sends_classrooms_to_one_under_its_own(redis_url):
    a = await start_server(redis_url=redis_url, node_id="hot-a", max_cpu=0.5)
    b = await start_server(secret=a.secret, redis_url=redis_url, node_id="hot-b",
                           max_cpu=0.5)
    c = await start_server(secret=a.secret, redis_url=redis_url, node_id="cool-c",
                           max_cpu=0.5)
    try:
        _freeze(a, b, c)
        await _fresh_records(a, b, c)
        nodes_a = _feature(a, "nodes")
        nodes_a.started_at -= 10  # past its first beat (start-up CPU is not counted)
        placement = _feature(a, "placement")
        for record in placement._peers:  # noqa: SLF001 - what their beats would say
            record["load"]["cpu"] = {"hot-b": 0.7, "cool-c": 0.1}.get(record["id"], 0.0)
        token = a.token("classroom", LESSON, name="A1")
        nodes_a.last_cpu = 0.3
        assert (await _hello(a.base_url, {"type": "hello", "token": token}))["type"] == \
            "welcome"  # under its limit
        nodes_a.last_cpu = 0.8
        reply = await _hello(a.base_url, {"type": "hello", "token": token})
        assert reply["type"] == "redirect" and reply["reason"] == "cpu", reply
        assert reply["node"] == "cool-c"  # hot-b is over its own limit
    finally:
        for srv in (c, b, a):
            await srv.close()


async def test_redirects_fill_the_least_loaded_node_first(redis_url):
    a = await start_server(redis_url=redis_url, node_id="pa", max_subscribers=0)
    b = await start_server(secret=a.secret, redis_url=redis_url, node_id="pb",
                           max_subscribers=2)
    c = await start_server(secret=a.secret, redis_url=redis_url, node_id="pc",
                           max_subscribers=4)
    try:
        _freeze(a, b, c)
        await _fresh_records(a, b, c)
        placement = _feature(a, "placement")
        for record in placement._peers:  # noqa: SLF001 - one process: CPU ties broken by id
            record["load"]["cpu"] = 0.0
        # B 0/2 and C 0/4 are both empty: the id breaks the tie; then C (1/4 < 1/2), then
        # ... every redirect counted against its target until that node's next beat
        picks = [placement.choose()["id"] for _ in range(6)]
        assert picks == ["pb", "pc", "pc", "pb", "pc", "pc"], picks
        assert placement.choose() is None  # both full now (by what A sent them)
        await _fresh_records(a, b, c)  # their beats say no one came: room again
        for record in placement._peers:  # noqa: SLF001
            record["load"]["cpu"] = 0.0
        assert placement.choose()["id"] == "pb"
    finally:
        for srv in (c, b, a):
            await srv.close()


async def test_a_node_that_carries_the_lesson_is_preferred(redis_url):
    """A lesson spills onto as few edges as there is room for: C carries the lesson (its
    teacher publishes there), so A's classrooms of it go to C although B is as empty and
    first by id; a classroom of another lesson goes to the least-loaded node (B)."""
    a = await start_server(redis_url=redis_url, node_id="ca", max_subscribers=0)
    b = await start_server(secret=a.secret, redis_url=redis_url, node_id="cb")
    c = await start_server(secret=a.secret, redis_url=redis_url, node_id="cc")
    teacher = ClassroomClient(c.base_url, c.token("teacher", LESSON, name="T"))
    try:
        await teacher.connect()
        await teacher.start_lesson()
        await teacher.publish(SyntheticVideoTrack(), SyntheticAudioTrack())
        _freeze(a, b, c)
        await _fresh_records(a, b, c)
        assert await _feature(a, "nodes").board.carriers(LESSON, {"ca", "cb", "cc"}) == {"cc"}
        for record in _feature(a, "placement")._peers:  # noqa: SLF001 - CPU ties (one process)
            record["load"]["cpu"] = 0.0
        token = a.token("classroom", LESSON, name="A1")
        reply = await _hello(a.base_url, {"type": "hello", "token": token})
        assert reply["type"] == "redirect" and reply["node"] == "cc", reply
        other = a.token("classroom", "other-lesson", name="A2")
        reply = await _hello(a.base_url, {"type": "hello", "token": other})
        assert reply["type"] == "redirect" and reply["node"] == "cb", reply
        # C full (its own limit): the lesson goes to B after all, never nowhere
        c.node.config.max_subscribers = 0
        await _fresh_records(a, b, c)
        for record in _feature(a, "placement")._peers:  # noqa: SLF001
            record["load"]["cpu"] = 0.0
        reply = await _hello(a.base_url, {"type": "hello", "token": token})
        assert reply["type"] == "redirect" and reply["node"] == "cb", reply
    finally:
        await teacher.close()
        for srv in (c, b, a):
            await srv.close()


@pytest.mark.parametrize("url", [
    "javascript:alert(1)//", "http://user@evil.example", "http://evil.example/x?y=1",
    "http://evil.example/#f", "http://evil.example\r\nSet-Cookie: x=1", "ftp://evil.example",
    "http://evil.example:99999", "http://evil.example/../admin", "http://evil.example/%2e",
    "https://evil.example'; script-src *", "http:///nohost", "", None, 42,
])
def test_safe_base_refuses(url):
    assert safe_base(url) is None


def test_safe_base_and_ws_url():
    assert safe_base("https://edu-1.example/") == "https://edu-1.example"
    assert safe_base("http://[::1]:8080") == "http://[::1]:8080"
    assert ws_url_of("https://edu-1.example/classroom") == "wss://edu-1.example/classroom/ws"
    assert ws_url_of("http://10.0.0.5:8080") == "ws://10.0.0.5:8080/ws"


async def test_hostile_records_are_never_a_target_nor_in_the_csp(redis_url):
    a = await start_server(redis_url=redis_url, node_id="host-a", max_subscribers=0)
    r = aioredis.from_url(redis_url)
    hostile = ["javascript:alert(1)//", "http://user@evil.example", "http://evil.example/?x",
               "http://evil.example\r\nX: y", "https://evil.example; script-src *",
               a.base_url]  # another id claiming A's own URL (one balancer URL: a loop)
    try:
        now = time.time()
        for i, url in enumerate(hostile):
            await r.set(f"classroom:node:evil-{i}", json.dumps({
                "id": f"evil-{i}", "http_url": url, "seen_at": now,
                "load": {"cpu": 0.0, "subscribers": 0}, "limits": {}}), px=60000)
            await r.sadd("classroom:nodes", f"evil-{i}")
        await _fresh_records(a)
        token = a.token("classroom", LESSON, name="A1")
        reply = await _hello(a.base_url, {"type": "hello", "token": token})
        assert reply["type"] == "welcome"  # no usable node: accepted here
        assert "fallback_sockets" not in reply  # and none to fail over to
        async with aiohttp.ClientSession() as http, http.get(
                a.base_url + f"/class/{LESSON}") as resp:
            csp = resp.headers["Content-Security-Policy"]
        connect = re.search(r"connect-src ([^;]*)", csp).group(1)
        assert "evil" not in csp and "javascript" not in csp, csp
        assert connect.split() == ["'self'", f"ws://{a.base_url[7:]}", f"wss://{a.base_url[7:]}"]

        await r.set("classroom:node:good-1", json.dumps({
            "id": "good-1", "http_url": "http://good.example:9", "seen_at": now,
            "load": {"cpu": 0.0, "subscribers": 0}, "limits": {}}), px=60000)
        await r.sadd("classroom:nodes", "good-1")
        await _fresh_records(a)
        reply = await _hello(a.base_url, {"type": "hello", "token": token})
        assert reply == {"type": "redirect", "url": "http://good.example:9",
                         "ws_url": "ws://good.example:9/ws", "node": "good-1",
                         "reason": "subscribers"}
        async with aiohttp.ClientSession() as http, http.get(
                a.base_url + f"/class/{LESSON}") as resp:
            assert "ws://good.example:9" in resp.headers["Content-Security-Policy"]
        # a wss socket (a secure page) is never sent to an http node
        placement = _feature(a, "placement")
        assert placement.choose(secure=True) is None
        assert placement.fallback_sockets(secure=True) == []
        # a welcome names the good node as a failover target, only that one, to classrooms
        # and teachers (their pages fail over); a student's phone has no media to keep
        a.node.config.max_subscribers = None
        for role, named in (("classroom", True), ("teacher", True), ("student", False)):
            reply = await _hello(a.base_url, {"type": "hello",
                                              "token": a.token(role, LESSON, name="X1")})
            assert reply["type"] == "welcome", reply
            assert reply.get("fallback_sockets") == (["ws://good.example:9/ws"] if named
                                                     else None), (role, reply)
    finally:
        await r.aclose()
        await a.close()


@pytest.mark.parametrize("fields", [
    {"redirected": -1}, {"redirected": 5}, {"redirected": "1"}, {"redirected": 1.5},
    {"redirected": True}, {"reconnect": "yes"}, {"reconnect": 1},
])
async def test_bad_hello_fields_are_refused(redis_url, fields):
    a = await start_server(redis_url=redis_url, node_id="strict-a", max_subscribers=0)
    try:
        token = a.token("classroom", LESSON, name="A1")
        reply = await _hello(a.base_url, {"type": "hello", "token": token, **fields})
        assert reply["type"] == "error" and reply["code"] == "bad_message", reply
        assert reply["ref"] == "hello"
    finally:
        await a.close()


async def test_a_client_that_does_not_follow_is_told(redis_url):
    a = await start_server(redis_url=redis_url, node_id="tell-a", max_subscribers=0)
    b = await start_server(secret=a.secret, redis_url=redis_url, node_id="tell-b")
    client = ClassroomClient(a.base_url, a.token("classroom", LESSON), follow_redirects=False)
    try:
        await _fresh_records(a, b)
        with pytest.raises(ProtocolError) as err:
            await client.connect()
        assert err.value.code == "redirect"
    finally:
        await client.close()
        await b.close()
        await a.close()
