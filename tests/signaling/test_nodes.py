"""Nodes on Redis: records with a TTL, one origin per lesson by compare-and-set, /api/nodes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from signaling.nodes import NodeBoard, NodesFeature
from tests.helpers import eventually, start_server

pytestmark = pytest.mark.redis


def _record(node_id: str) -> dict:
    return {"id": node_id, "http_url": f"http://{node_id}", "load": {"cpu": 0.1}}


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_records_expire_and_one_origin_wins(backend, request):
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    a, b = NodeBoard(url, ttl=0.6), NodeBoard(url, ttl=0.6)
    if url is None:
        b = a  # memory: one process, one board
    try:
        await a.put(_record("node-a"))
        await b.put(_record("node-b"))
        assert [n["id"] for n in await a.nodes()] == ["node-a", "node-b"]
        # two nodes claim one origin at once: exactly one wins, both see the same holder
        won = await asyncio.gather(a.claim_origin("math", "node-a"),
                                   b.claim_origin("math", "node-b"))
        assert won[0] == won[1] in ("node-a", "node-b")
        holder = won[0]
        other = "node-b" if holder == "node-a" else "node-a"
        assert await a.claim_origin("math", other) == holder  # a live holder keeps it
        # the holder stops beating: its record lapses, the other takes the origin over
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            await (a if other == "node-a" else b).put(_record(other))
            if holder not in [n["id"] for n in await a.nodes()]:
                break
            await asyncio.sleep(0.1)
        assert [n["id"] for n in await a.nodes()] == [other]
        assert await b.claim_origin("math", other) == other
        assert await a.origin("math") == other
    finally:
        await a.close()
        if b is not a:
            await b.close()


async def test_two_servers_list_each_other_and_the_publisher_is_origin(redis_url):
    a = await start_server(redis_url=redis_url, node_id="node-a")  # one process: own ids
    b = await start_server(redis_url=redis_url, node_id="node-b")
    try:
        ops = a.token("ops", "*")
        async with aiohttp.ClientSession() as http:
            async def nodes(server) -> dict:
                async with http.get(server.base_url + "/api/nodes",
                                    headers={"Authorization": f"Bearer {ops}"}) as resp:
                    assert resp.status == 200
                    return await resp.json()

            ids = {a.node.config.node_id, b.node.config.node_id}
            assert ids == {n["id"] for n in (await nodes(b))["nodes"]}
            record = next(n for n in (await nodes(a))["nodes"] if n["id"] == a.node.config.node_id)
            assert record["http_url"].startswith("http://127.0.0.1:")
            assert set(record["load"]) >= {"cpu", "subscribers", "publishers", "lessons"}
            # a classroom token may not read the node list; no token: 401
            async with http.get(a.base_url + "/api/nodes", headers={
                    "Authorization": f"Bearer {a.token('classroom', 'math-1')}"}) as resp:
                assert resp.status == 403
            async with http.get(a.base_url + "/api/nodes") as resp:
                assert resp.status == 401
            # b stops: it takes its record with it (no wait for the TTL)
            await b.close()
            b = None
            assert [n["id"] for n in (await nodes(a))["nodes"]] == [a.node.config.node_id]
            # a lesson a publishes to: a is its origin, as every node reads it
            feature = next(f for f in a.node.features if isinstance(f, NodesFeature))
            a.node._publishers.add("math-1")  # what the relay's publisher callback does
            await feature.beat()
            assert await feature.board.origin("math-1") == a.node.config.node_id
            await eventually(lambda: feature.origins.get("math-1") == a.node.config.node_id)
    finally:
        await a.close()
        if b is not None:
            await b.close()
