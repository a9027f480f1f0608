"""Catalog persistence, rebuild, retention and quota, and the `classroom library` command."""

from __future__ import annotations

import json
import time

import av

from loadtests.packet_source import PacketSource
from recording.catalog import Catalog, new_recording_id, valid_id
from recording.packager import package
from recording.recorder import Recorder
from signaling.cli import main


def rec(catalog: Catalog, lesson: str, *, state="ready", age_days=0.0, size=0, **kw):
    rid = new_recording_id(lesson)
    now = time.time() - age_days * 86400
    catalog.create({"id": rid, "lesson": lesson, "state": state, "started_at": now,
                    "ended_at": now, "schools": ["s"], "title": lesson, **kw})
    if size:
        (catalog.dir_of(rid) / "blob").write_bytes(b"x" * size)
    return rid


def test_ids_are_safe():
    rid = new_recording_id("../../etc/passwd 数学")
    assert valid_id(rid) and "/" not in rid and ".." not in rid
    for bad in ("..", "a/b", "", "-a", "a" * 101, "a\x00", ".secret", None, 5):
        assert not valid_id(bad)


def test_catalog_survives_restart_and_rebuilds_from_folders(tmp_path):
    catalog = Catalog(tmp_path)
    a = rec(catalog, "l1")
    b = rec(catalog, "l2", title="分数")
    catalog.update(b, subject="数学")
    catalog.add_consent("山村小学", by="张老师", lesson="l1")
    assert {r["id"] for r in Catalog(tmp_path).list()} == {a, b}
    # a crash mid-write leaves a temp file beside an intact catalog: ignored
    (tmp_path / ".catalog.json.123.tmp").write_text("{half")
    assert Catalog(tmp_path).get(b)["subject"] == "数学"
    # the catalog file is lost or corrupt: rebuilt from meta.json, consents kept if readable
    (tmp_path / "catalog.json").write_text("{not json")
    rebuilt = Catalog(tmp_path)
    assert {r["id"] for r in rebuilt.list()} == {a, b}
    assert rebuilt.get(b)["title"] == "分数"
    (tmp_path / "catalog.json").unlink()
    assert {r["id"] for r in Catalog(tmp_path).list()} == {a, b}


def test_consent_is_recorded_once(tmp_path):
    catalog = Catalog(tmp_path)
    first = catalog.add_consent("山村小学", by="张老师", lesson="l1")
    again = catalog.add_consent("山村小学", by="someone else", lesson="l2")
    assert again == first and first["by"] == "张老师"
    assert Catalog(tmp_path).consent("山村小学")["lesson"] == "l1"


def test_retention_and_quota_never_delete_busy_or_unfinished(tmp_path):
    catalog = Catalog(tmp_path)
    old_ready = rec(catalog, "old", age_days=40)
    old_played = rec(catalog, "played", age_days=40)
    old_writing = rec(catalog, "writing", state="recording", age_days=40)
    new_big = rec(catalog, "big", age_days=1, size=300_000)
    newest = rec(catalog, "newest", size=300_000)
    deleted = catalog.enforce(retention_days=30, quota_bytes=None, busy={old_played})
    assert deleted == [old_ready]
    # quota: oldest finished first, never the busy or the one being written
    deleted = catalog.enforce(retention_days=None, quota_bytes=400_000,
                              busy={old_played, newest})
    assert deleted == [new_big]
    left = {r["id"] for r in catalog.list()}
    assert left == {old_played, old_writing, newest}
    assert catalog.dir_of(newest).exists() and not catalog.dir_of(new_big).exists()


async def test_library_command(tmp_path, capsys):
    catalog = Catalog(tmp_path)
    rid = rec(catalog, "cli-1", state="packaging", teacher="王老师")
    recorder = Recorder(catalog.dir_of(rid))
    PacketSource().feed(recorder, 3.0)
    await recorder.stop()
    lib = ["library", "--library", str(tmp_path)]
    assert main([*lib, "delete", rid]) == 1  # still being packaged
    assert main([*lib, "package", rid]) == 0
    assert main([*lib, "list"]) == 0
    assert rid in capsys.readouterr().out
    assert main([*lib, "show", rid]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "ready" and shown["duration"] > 2.5
    out = tmp_path / "export.mp4"
    assert main([*lib, "export", rid, str(out)]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video and c.streams.audio
    (tmp_path / "catalog.json").unlink()
    assert main([*lib, "rebuild"]) == 0
    assert "1 recordings" in capsys.readouterr().out
    assert main([*lib, "show", "../../etc"]) == 2
    assert main([*lib, "delete", rid]) == 0
    assert main([*lib, "show", rid]) == 1
    assert not catalog.dir_of(rid).exists()


def test_package_summary_durations(tmp_path):
    recorder_dir = tmp_path / "r"
    import asyncio

    async def go():
        recorder = Recorder(recorder_dir)
        PacketSource(640, 360).feed(recorder, 6.0)
        await recorder.stop()

    asyncio.run(go())
    summary = package(recorder_dir)
    names = [r["name"] for r in summary["renditions"]]
    assert names == ["360p", "180p", "audio"]
    for r in summary["renditions"]:
        assert abs(r["duration"] - 6.0) < 1.2, r
    bandwidths = [r["peak_bps"] for r in summary["renditions"]]
    assert bandwidths[-1] < 120_000  # the audio-only rung fits a thin link
