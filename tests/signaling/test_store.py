"""One suite, both backends (memory and a real redis-server)."""

import asyncio

import pytest

from signaling.store import LessonRecord, PresenceRecord, open_store
from tests.helpers import eventually


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request, tmp_path):
    """Each backend: memory, SQLite in a library folder (the embedded default), Redis."""
    events = []

    async def on_event(lesson_id, event):
        events.append((lesson_id, event))

    backend = request.getfixturevalue("redis_url") if request.param == "redis" else None
    library = tmp_path if request.param == "sqlite" else None
    s = open_store(backend, presence_ttl=0.6, library=library)
    await s.start(on_event)
    s.events = events
    if backend:
        await asyncio.wait_for(s.pubsub_connected.wait(), 5)
    yield s
    await s.close()


async def test_lessons_create_get_save_list(store):
    assert await store.create_lesson(LessonRecord(id="a", title="数学"))
    assert not await store.create_lesson(LessonRecord(id="a", title="again"))
    lesson = await store.get_lesson("a")
    assert lesson.title == "数学" and lesson.state == "waiting"
    lesson.state = "live"
    await store.save_lesson(lesson)
    assert (await store.get_lesson("a")).state == "live"
    assert await store.get_lesson("missing") is None
    await store.create_lesson(LessonRecord(id="b"))
    assert [x.id for x in await store.list_lessons()] == ["a", "b"]


async def test_presence_expires_unless_refreshed(store):
    await store.put_presence(PresenceRecord(peer_id="p1", lesson="a", role="classroom"))
    await store.put_presence(PresenceRecord(peer_id="p2", lesson="a", role="teacher"))
    assert {r.peer_id for r in await store.roster("a")} == {"p1", "p2"}

    async def only_p2_left():
        await store.put_presence(PresenceRecord(peer_id="p2", lesson="a", role="teacher"))
        return [r.peer_id for r in await store.roster("a")] == ["p2"]

    await eventually(only_p2_left, timeout=5, interval=0.1)
    await store.remove_presence("a", "p2")
    assert await store.roster("a") == []


async def test_presence_update_keeps_one_entry(store):
    rec = PresenceRecord(peer_id="p1", lesson="a", role="classroom")
    await store.put_presence(rec)
    rec.hand = True
    await store.put_presence(rec)
    roster = await store.roster("a")
    assert len(roster) == 1 and roster[0].hand is True


async def test_events_reach_this_node_in_order(store):
    for i in range(20):
        await store.publish("a", {"type": "n", "i": i})
    await eventually(lambda: len(store.events) == 20, timeout=5)
    assert [e["i"] for _, e in store.events] == list(range(20))
    assert {lesson for lesson, _ in store.events} == {"a"}


async def test_ping(store):
    assert await store.ping()
