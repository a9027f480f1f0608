"""The directory API on a real server: validation, 404/409, school scope."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.helpers import start_server


@pytest.fixture
async def server():
    srv = await start_server()
    yield srv
    await srv.close()


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers={
                "Authorization": f"Bearer {self.token}"}) as r:
            return r.status, (await r.json() if r.status != 204 else None)


async def test_directory_crud_validation_and_conflicts(server):
    async with aiohttp.ClientSession() as http:
        admin = Api(http, server.base_url, server.token("admin", "*"))
        st, body = await admin("POST", "/api/schools",
                               {"id": "s1", "name": "山村小学", "kind": "primary"})
        assert st == 201 and body["name"] == "山村小学" and body["created_at"] > 0
        assert (await admin("POST", "/api/schools", {"id": "s1", "name": "again"}))[0] == 409
        assert (await admin("POST", "/api/schools", {"id": "s2", "name": "城区初中",
                                                     "kind": "junior"}))[0] == 201
        for bad in ({"id": "s 3", "name": "x"}, {"id": "s3", "name": "x" * 101},
                    {"id": "s3", "name": ""}, {"id": "s3", "name": "x", "kind": "uni"},
                    {"id": "s3"}, ["not", "an", "object"]):
            st, body = await admin("POST", "/api/schools", bad)
            assert st == 400 and body["error"]["code"] in ("bad_message", "bad_json"), bad
        st, body = await admin("POST", "/api/schools/s1/classrooms",
                               {"id": "c1", "name": "一班", "device_kind": "tv"})
        assert st == 201 and body["school_id"] == "s1"
        st, body = await admin("POST", "/api/schools/s1/classrooms",
                               {"id": "c2", "name": "二班", "device_kind": "fridge"})
        assert st == 400 and "device_kind" in body["error"]["message"]
        # one classroom, one school
        st, body = await admin("POST", "/api/schools/s2/classrooms", {"id": "c1", "name": "x"})
        assert st == 409 and "another school" in body["error"]["message"]
        st, body = await admin("PUT", "/api/classrooms/c1", {"school_id": "s2"})
        assert st == 409 and body["error"]["code"] == "conflict"
        assert (await admin("PUT", "/api/classrooms/c1", {"name": "一(1)班"}))[1][
            "name"] == "一(1)班"
        st, body = await admin("POST", "/api/schools/s1/teachers",
                               {"id": "t1", "name": "王老师", "subjects": ["数学"]})
        assert st == 201 and body["subjects"] == ["数学"]
        assert (await admin("POST", "/api/schools/nope/teachers", {"name": "x"}))[0] == 404
        st, body = await admin("POST", "/api/clusters",
                               {"id": "k1", "name": "6+2+N", "school_ids": ["s1", "s2"]})
        assert st == 201
        st, body = await admin("POST", "/api/clusters",
                               {"id": "k2", "name": "x", "school_ids": ["s1", "ghost"]})
        assert st == 400 and "ghost" in body["error"]["message"]
        # a school with classrooms and teachers cannot go
        st, body = await admin("DELETE", "/api/schools/s1")
        assert st == 409 and "classroom c1" in body["error"]["message"] \
            and "teacher t1" in body["error"]["message"]
        # a classroom a slot uses cannot go
        await server.node.school_db.put("slot", "sl1", {"id": "sl1", "main_classroom_id": "c1",
                                                        "receiving_classroom_ids": [],
                                                        "teacher_id": "t1"})
        st, body = await admin("DELETE", "/api/classrooms/c1")
        assert st == 409 and "slot sl1" in body["error"]["message"]
        await server.node.school_db.delete("slot", "sl1")
        assert (await admin("DELETE", "/api/classrooms/c1"))[0] == 204
        assert (await admin("DELETE", "/api/teachers/t1"))[0] == 204
        assert (await admin("DELETE", "/api/classrooms/c1"))[0] == 404
        assert (await admin("DELETE", "/api/schools/s1"))[0] == 204
        st, body = await admin("GET", "/api/clusters/k1")
        assert st == 200 and body["school_ids"] == ["s2"]  # s1 left its cluster
        st, body = await admin("GET", "/api/schools")
        assert [s["id"] for s in body["schools"]] == ["s2"]


async def test_school_admin_sees_and_edits_only_its_school(server):
    async with aiohttp.ClientSession() as http:
        admin = Api(http, server.base_url, server.token("admin", "*"))
        for sid in ("s1", "s2"):
            await admin("POST", "/api/schools", {"id": sid, "name": sid})
            await admin("POST", f"/api/schools/{sid}/classrooms", {"id": f"c-{sid}",
                                                                  "name": "x"})
        await admin("POST", "/api/clusters", {"id": "k1", "name": "k", "school_ids": ["s1"]})
        await admin("POST", "/api/clusters", {"id": "k2", "name": "k", "school_ids": ["s2"]})
        sa = Api(http, server.base_url, server.token("school_admin", "*", school="s1"))
        assert [s["id"] for s in (await sa("GET", "/api/schools"))[1]["schools"]] == ["s1"]
        assert [c["id"] for c in (await sa("GET", "/api/clusters"))[1]["clusters"]] == ["k1"]
        # another school's data: 404, read or write (it does not learn what exists)
        for method, path, body in (("GET", "/api/schools/s2", None),
                                   ("PUT", "/api/schools/s2", {"name": "mine"}),
                                   ("GET", "/api/schools/s2/classrooms", None),
                                   ("POST", "/api/schools/s2/classrooms", {"name": "x"}),
                                   ("PUT", "/api/classrooms/c-s2", {"name": "x"}),
                                   ("DELETE", "/api/classrooms/c-s2", None),
                                   ("GET", "/api/clusters/k2", None)):
            st, reply = await sa(method, path, body)
            assert (st, reply["error"]["code"]) == (404, "not_found"), (method, path)
        # what it sees but may not change: 403
        assert (await sa("PUT", "/api/clusters/k1", {"name": "x"}))[0] == 403
        assert (await sa("POST", "/api/schools", {"id": "s9", "name": "x"}))[0] == 403
        assert (await sa("DELETE", "/api/schools/s1"))[0] == 403
        # its own school: yes
        assert (await sa("PUT", "/api/schools/s1", {"name": "新名"}))[1]["name"] == "新名"
        assert (await sa("POST", "/api/schools/s1/teachers", {"id": "t1", "name": "李"}))[
            0] == 201
        # a lesson admin of s1 reads s1 but changes nothing; a teacher: forbidden
        la = Api(http, server.base_url, server.token("admin", "math-1", school="s1"))
        assert (await la("GET", "/api/schools/s1"))[0] == 200
        assert (await la("PUT", "/api/schools/s1", {"name": "x"}))[0] == 403
        teacher = Api(http, server.base_url, server.token("teacher", "math-1", school="s1"))
        assert (await teacher("GET", "/api/schools"))[0] == 403
        # two racing creates of one classroom id: exactly one wins
        results = await asyncio.gather(*(sa("POST", "/api/schools/s1/classrooms",
                                            {"id": "race", "name": str(i)})
                                         for i in range(4)))
        assert sorted(st for st, _ in results) == [201, 409, 409, 409]
