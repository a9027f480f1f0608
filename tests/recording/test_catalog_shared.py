"""One library folder, several processes (``classroom serve --workers N``): the catalog.

Each writer changes the catalog as it is on disk under a lock, so no process writes over
another's records; readers see the others' changes; an unfinished recording is recovered
only by its owner or once its owner is gone.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from recording.catalog import Catalog, hold_owner, owner_alive
from recording.library import RecordingConfig, RecordingLibrary

REPO = Path(__file__).resolve().parents[2]


def record(rid: str, **fields: object) -> dict:
    return {"id": rid, "lesson": "math", "state": "ready", "started_at": 1.0, **fields}


def test_two_catalogs_on_one_folder_keep_both_writers(tmp_path: Path) -> None:
    a, b = Catalog(tmp_path), Catalog(tmp_path)  # two processes' views of one folder
    a.create(record("r-a"))
    b.create(record("r-b"))  # b's memory had no r-a: it must not write it away
    a.add_consent("school-1", by="T")
    b.update("r-a", title="from b")
    for view in (a, b, Catalog(tmp_path)):
        assert {r["id"] for r in view.list()} == {"r-a", "r-b"}
        assert view.get("r-a")["title"] == "from b"
        assert view.consent("school-1") is not None
    assert b.delete("r-a") and a.get("r-a") is None


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys
        from recording.catalog import Catalog
        cat = Catalog(sys.argv[1])
        for i in range(40):
            cat.create({"id": f"{sys.argv[2]}-{i}", "lesson": "m", "state": "ready"})
            cat.update(f"{sys.argv[2]}-{i}", title="t")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name], cwd=REPO)
             for name in ("p", "q", "r")]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    records = Catalog(tmp_path).list()
    assert len(records) == 120 and all(r.get("title") == "t" for r in records)


def test_claim_and_recovery_spare_a_live_owners_recording(tmp_path: Path) -> None:
    held = hold_owner(tmp_path, "host-8080-w1")
    assert held is not None and hold_owner(tmp_path, "host-8080-w1") is None
    assert owner_alive(tmp_path, "host-8080-w1") and not owner_alive(tmp_path, "nobody")
    cat = Catalog(tmp_path)
    cat.create(record("r-live", state="recording", owner="host-8080-w1"))
    assert cat.claim("r-live", "host-8080-w2", lambda o: owner_alive(tmp_path, o)) is None
    held.close()  # w1 died: the kernel drops its lock
    claimed = cat.claim("r-live", "host-8080-w2", lambda o: owner_alive(tmp_path, o))
    assert claimed is not None and claimed["owner"] == "host-8080-w2"


async def test_a_worker_starting_leaves_another_workers_recording_alone(tmp_path: Path
                                                                         ) -> None:
    class NoMedia:
        def attach_sink(self, lesson_id, sink) -> None: ...

        def detach_sink(self, lesson_id, sink) -> None: ...

    async def changed(_lesson: str) -> None: ...

    w1 = RecordingLibrary(RecordingConfig(owner="h-w1", package=False))
    await w1.open(tmp_path, NoMedia(), changed)
    w1.catalog.create(record("r-w1", state="recording", owner="h-w1"))
    w1.catalog.create(record("r-gone", state="recording", owner="h-w3"))  # died earlier
    w2 = RecordingLibrary(RecordingConfig(owner="h-w2", package=False))
    await w2.open(tmp_path, NoMedia(), changed)  # a worker (re)starting: recovery runs
    assert w2.catalog.get("r-w1")["state"] == "recording"  # w1 is writing it
    gone = w2.catalog.get("r-gone")
    assert gone["owner"] == "h-w2" and gone["state"] == "failed"  # no segments: recovered
    await w1.close()
    await w2.close()
