"""Library HTTP: visibility by school, signed expiring links, path tricks, Range, edits."""

from __future__ import annotations

import time

import aiohttp
import pytest

from loadtests.packet_source import PacketSource
from recording.catalog import new_recording_id
from recording.recorder import Recorder
from signaling.recordings.routes import sign
from tests.helpers import start_server


async def make_recording(feature, lesson: str, school: str, seconds: float = 2.0) -> str:
    rid = new_recording_id(lesson)
    now = time.time()
    feature.catalog.create({
        "id": rid, "lesson": lesson, "title": f"{lesson} 分数", "subject": "数学",
        "grade": "三年级", "teacher": "王老师", "school": school, "schools": [school],
        "published": False, "date": "2025-01-01", "started_at": now, "ended_at": now,
        "duration": 0.0, "chapters": [], "renditions": [], "size": 0, "state": "packaging"})
    recorder = Recorder(feature.catalog.dir_of(rid))
    PacketSource().feed(recorder, seconds)
    await recorder.stop()
    assert await feature.library.package(rid) is not None
    assert feature.catalog.get(rid)["state"] == "ready"
    return rid


@pytest.fixture
async def library():
    server = await start_server()
    feature = next(f for f in server.node.features if f.name == "recording")
    a = await make_recording(feature, "lib-a", "山村小学")
    b = await make_recording(feature, "lib-b", "河口教学点")
    async with aiohttp.ClientSession() as http:
        yield server, feature, http, a, b
    await server.close()


def bearer(server, role, lesson, school=""):
    return {"Authorization": "Bearer " + server.token(role, lesson, school=school)}


async def test_students_see_only_their_schools_recordings(library):
    server, feature, http, a, b = library
    url = server.base_url + "/api/recordings"
    async with http.get(url, headers=bearer(server, "student", "x", "山村小学")) as r:
        ids = [x["id"] for x in (await r.json())["recordings"]]
    assert ids == [a]
    async with http.get(url, headers=bearer(server, "student", "x", "山村小学"),
                        params={"school": "河口教学点"}) as r:
        assert (await r.json())["recordings"] == []
    async with http.get(f"{url}/{b}", headers=bearer(server, "student", "x", "山村小学")) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    async with http.get(url, headers=bearer(server, "admin", "*")) as r:
        assert {x["id"] for x in (await r.json())["recordings"]} == {a, b}
    async with http.get(url, headers=bearer(server, "admin", "*"), params={"q": "lib-b"}) as r:
        assert [x["id"] for x in (await r.json())["recordings"]] == [b]
    async with http.get(url) as r:
        assert r.status == 401
    # the teacher publishes b to all schools: now everyone sees it
    async with http.patch(f"{url}/{b}", headers=bearer(server, "teacher", "lib-b"),
                          json={"published": True, "title": "分数的意义"}) as r:
        assert r.status == 200 and (await r.json())["published"] is True
    async with http.patch(f"{url}/{b}", headers=bearer(server, "teacher", "lib-a"),
                          json={"published": False}) as r:
        assert r.status in (403, 404)
    async with http.patch(f"{url}/{b}", headers=bearer(server, "admin", "*"),
                          json={"state": "ready"}) as r:
        assert r.status == 400
    async with http.get(url, headers=bearer(server, "student", "x", "山村小学")) as r:
        assert {x["id"] for x in (await r.json())["recordings"]} == {a, b}


async def test_signed_links_expire_and_cannot_be_forged(library):
    server, feature, http, a, b = library
    base = server.base_url
    good_exp = int(time.time()) + 60
    good = sign(server.secret, a, good_exp)
    async with http.get(f"{base}/media/{a}/{good_exp}/{good}/hls/master.m3u8") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    # the signature of one recording does not open another
    async with http.get(f"{base}/media/{b}/{good_exp}/{good}/hls/master.m3u8") as r:
        assert r.status == 403
    old = int(time.time()) - 1
    async with http.get(f"{base}/media/{a}/{old}/{sign(server.secret, a, old)}/poster.jpg") as r:
        assert r.status == 403
    async with http.get(f"{base}/media/{a}/{good_exp + 1}/{good}/poster.jpg") as r:
        assert r.status == 403
    async with http.get(f"{base}/api/replay/{a}", params={"exp": str(old), "sig": "x"}) as r:
        assert r.status == 403
    async with http.post(f"{base}/api/recordings/{a}/link",
                         headers=bearer(server, "student", "x", "山村小学"),
                         json={"ttl": 120}) as r:
        assert r.status == 201
        link = await r.json()
    assert link["expires"] - time.time() < 125
    async with http.get(base + link["media"] + "poster.jpg") as r:
        assert r.status == 200 and (await r.read())[:2] == b"\xff\xd8"


PATH_TRICKS = [
    "../meta.json", "..%2Fmeta.json", "hls/../../meta.json", "hls/%2e%2e/%2e%2e/meta.json",
    "segments/seg-000001.webm", "/etc/passwd", "hls/master.m3u8%00.jpg", "replay/poster.jpg",
    "hls/x/../../../catalog.json", "thumbs/t00000.jpg/..", ".secret", "hls//master.m3u8",
    "%2e%2e/%2e%2e/catalog.json", "hls/360p/../../../../.secret",
]
BAD_IDS = ["..", "..%2F..%2Fetc", "a/../../b", "-x", "a" * 200, "%00", ".secret"]


async def test_path_tricks_and_bad_ids_are_refused(library):
    server, feature, http, a, b = library
    exp = int(time.time()) + 60
    for name in PATH_TRICKS:
        url = f"{server.base_url}/media/{a}/{exp}/{sign(server.secret, a, exp)}/{name}"
        async with http.get(url) as r:
            assert r.status in (403, 404), (name, r.status)
            body = await r.read()
            assert b"secret" not in body and b"recordings" not in body
    for rid in BAD_IDS:
        async with http.get(f"{server.base_url}/api/recordings/{rid}",
                            headers=bearer(server, "admin", "*")) as r:
            assert r.status == 404, rid
        url = f"{server.base_url}/media/{rid}/{exp}/{sign(server.secret, rid, exp)}/poster.jpg"
        async with http.get(url) as r:
            assert r.status in (403, 404), rid


async def test_range_requests(library):
    server, feature, http, a, b = library
    exp = int(time.time()) + 60
    url = f"{server.base_url}/media/{a}/{exp}/{sign(server.secret, a, exp)}/lesson.mp4"
    size = (feature.catalog.dir_of(a) / "replay" / "lesson.mp4").stat().st_size
    async with http.get(url, headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206 and len(await r.read()) == 10
        assert r.headers["Content-Range"] == f"bytes 10-19/{size}"
    async with http.get(url, headers={"Range": f"bytes={size + 10}-"}) as r:
        assert r.status == 416
    async with http.get(url, headers={"Range": f"bytes={size - 5}-{size + 100}"}) as r:
        assert r.status == 206 and len(await r.read()) == 5
    async with http.get(url + "?download=1") as r:
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        assert len(await r.read()) == size


async def test_delete_and_busy(library):
    server, feature, http, a, b = library
    url = f"{server.base_url}/api/recordings/{a}"
    feature.library.packaging.add(a)
    async with http.delete(url, headers=bearer(server, "admin", "*")) as r:
        assert r.status == 409
    feature.library.packaging.discard(a)
    async with http.delete(url, headers=bearer(server, "student", "lib-a", "山村小学")) as r:
        assert r.status == 403
    async with http.delete(url, headers=bearer(server, "teacher", "lib-a")) as r:
        assert r.status == 200
    assert feature.catalog.get(a) is None and not feature.catalog.dir_of(a).exists()
