"""Retention and quota as `classroom serve` flags, enforced by a running server without
deleting the recording being written or one being played."""

from __future__ import annotations

import time

import aiohttp
import pytest

from signaling.cli import _parser, _recording_options, main
from signaling.config import Config
from signaling.recordings.feature import RecordingFeature
from signaling.recordings.routes import sign
from tests.helpers import eventually, start_server
from tests.recording.conftest import teacher_publishing
from tests.recording.test_library_api import make_recording


def feature_for(argv: list[str]) -> RecordingFeature:
    args = _parser().parse_args(["serve", *argv])
    return RecordingFeature.from_config(Config(**_recording_options(args)))


def test_flags_with_environment_defaults(monkeypatch):
    for name in ("CLASSROOM_RECORDING", "CLASSROOM_RETENTION_DAYS",
                 "CLASSROOM_LIBRARY_QUOTA_GB"):
        monkeypatch.delenv(name, raising=False)
    cfg = feature_for([]).config
    assert (cfg.enabled, cfg.retention_days, cfg.quota_bytes) == (True, None, None)
    monkeypatch.setenv("CLASSROOM_RETENTION_DAYS", "7")
    monkeypatch.setenv("CLASSROOM_LIBRARY_QUOTA_GB", "2.5")
    monkeypatch.setenv("CLASSROOM_RECORDING", "0")
    cfg = feature_for([]).config
    assert (cfg.enabled, cfg.retention_days, cfg.quota_bytes) == (False, 7, 2_500_000_000)
    monkeypatch.setenv("CLASSROOM_RECORDING", "1")
    cfg = feature_for(["--retention-days", "30", "--library-quota-gb", "0.5",
                       "--no-recording"]).config
    assert (cfg.enabled, cfg.retention_days, cfg.quota_bytes) == (False, 30, 500_000_000)


@pytest.mark.parametrize("argv", [["--retention-days", "-1"], ["--retention-days", "x"],
                                  ["--library-quota-gb", "0"], ["--library-quota-gb", "inf"]])
def test_bad_flags_are_refused_clearly(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["serve", *argv])
    assert exc.value.code == 2
    assert "expected a positive number" in capsys.readouterr().err


def test_bad_environment_value_stops_serve_with_a_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CLASSROOM_LIBRARY_QUOTA_GB", "lots")
    assert main(["serve", "--library", str(tmp_path), "--secret", "s" * 32,
                 "--no-demo"]) == 2
    assert "CLASSROOM_LIBRARY_QUOTA_GB" in capsys.readouterr().err


async def test_quota_spares_the_recording_being_written_and_the_one_played():
    # a quota of 1 kB: every finished recording is over it
    server = await start_server(retention_days=30, library_quota_gb=1e-6)
    feature = next(f for f in server.node.features if f.name == "recording")
    assert feature.config.quota_bytes == 1000 and feature.config.retention_days == 30
    teacher = None
    try:
        # (the quota is lifted while the finished recordings are made: each packaging
        # enforces it, and they would go before the test starts)
        feature.config.quota_bytes = None
        played = await make_recording(feature, "ret-a", "山村小学", seconds=2.0)
        idle = await make_recording(feature, "ret-b", "山村小学", seconds=2.0)
        expired = await make_recording(feature, "ret-c", "山村小学", seconds=2.0)
        await eventually(lambda: not feature.library.pending, timeout=10)  # their retention passes
        feature.config.quota_bytes = 1000
        old = time.time() - 40 * 86400
        feature.catalog.update(expired, started_at=old, ended_at=old)
        # a lesson being recorded right now
        teacher = await teacher_publishing(server.base_url, server.token(
            "teacher", "ret-live", name="王老师", school="山村小学"))
        await teacher.start_lesson()
        live = (await teacher.next_message(
            "recording", where=lambda m: m["state"] == "recording", timeout=15))["recording_id"]
        await eventually(lambda: feature.library.active["ret-live"].recorder.segments, timeout=20)
        # someone is playing `played` (its media was just served)
        exp = int(time.time()) + 60
        url = (f"{server.base_url}/media/{played}/{exp}/{sign(server.secret, played, exp)}"
               "/hls/master.m3u8")
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 200

        deleted = await feature.library.enforce_retention()
        assert deleted[0] == expired  # retention first
        assert set(deleted) == {expired, idle}  # then the quota, never the busy ones
        ids = {r["id"] for r in feature.catalog.list()}
        assert {played, live} <= ids and not ids & {expired, idle}
        assert (feature.catalog.dir_of(live) / "segments").is_dir()

        # once nobody has played it for the play window, it may go; the live one may not
        feature.config.play_window = 0.0
        assert await feature.library.enforce_retention() == [played]
        assert feature.catalog.get(live)["state"] == "recording"
        assert feature.library.active["ret-live"].recorder.stats()["errors"] == 0
    finally:
        if teacher is not None:
            await teacher.close()
        await server.close()
