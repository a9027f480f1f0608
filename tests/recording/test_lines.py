"""The recording holds what the classrooms saw: the teacher, the shared slides, the stage.

A real relay with a real aiortc teacher (camera + share + voice) and a real classroom
uplink; the library records the share and the stage lines as the relay encoded them
(``tracks/share``, ``tracks/stage``) and packages them into ``share.mp4``/``stage.mp4``
with the lesson seconds where each had media; the stage classroom's voice is in the
lesson's audio.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np

from media_relay import Relay, RelayConfig
from recording.library import LessonInfo, RecordingConfig, RecordingLibrary
from recording.packager import REPLAY_DIR
from signaling.recordings.feature import RecordingMedia
from tests.helpers import eventually
from tests.media_relay.peers import publish_uplink
from tests.media_relay.test_share import publish_with_share
from tests.recording.conftest import decode_counts

LESSON = "lines-1"
STAGE_TONE = 1000.0  # the classroom's voice; the teacher's SyntheticAudioTrack is 440 Hz


def tone_ratio(pcm: np.ndarray, hz: float) -> float:
    """Energy near ``hz`` over the energy near 440 Hz (the teacher) in mono 48 kHz PCM."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(pcm.size, 1 / 48000)

    def band(f: float) -> float:
        return float(spectrum[(freqs > f - 20) & (freqs < f + 20)].sum())

    return band(hz) / max(band(440.0), 1.0)


def audio_between(path: Path, start: float, end: float) -> np.ndarray:
    out = []
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in c.decode(audio=0):
            if start <= float(frame.time) < end:
                for f in resampler.resample(frame):
                    out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.int16)


async def test_share_and_stage_are_recorded_as_their_own_lines(tmp_path):
    # aiortc's own VP8 encoder sends the synthetic uplink over a browser's 400 kbit/s cap:
    # with the cap the relay stops forwarding its video after 5 s (uplink_over_cap), as it
    # should; the cap is not what this test is about
    relay = Relay(RelayConfig(rate_control=False, uplink_max_bitrate=10_000_000))
    library = RecordingLibrary(RecordingConfig(incremental=False,
                                               packager_args=["--preset", "ultrafast"]))

    async def changed(lesson_id: str) -> None:
        return None

    await library.open(tmp_path, RecordingMedia(relay), changed)
    try:
        relay.set_share(LESSON, False)  # the share line is there, not on yet
        teacher = await publish_with_share(relay, LESSON, "teacher/publish")
        room = await publish_uplink(relay, LESSON, "room-a/uplink", width=320, height=180,
                                    frequency=STAGE_TONE)

        async def live() -> LessonInfo:
            return LessonInfo(LESSON, "分数", "王老师", "城区一小")

        await library.ensure(LESSON, media_here=lambda: True, live_lesson=live)
        active = library.active[LESSON]
        await eventually(lambda: active.recorder.packets > 30, timeout=15)

        def now() -> float:
            return active.recorder.timeline_ms() / 1000

        await asyncio.sleep(1.0)
        share_on = now()
        relay.set_share(LESSON, True)
        await asyncio.sleep(2.5)
        relay.set_stage(LESSON, "room-a/uplink")
        stage_on = now()
        await asyncio.sleep(1.5)
        relay.set_share(LESSON, False)
        share_off = now()
        await asyncio.sleep(2.5)
        end = now()
        rid = active.id
        started = time.monotonic()
        await library.stop(LESSON, package=True)
        await eventually(lambda: (library.catalog.get(rid) or {}).get("state")
                         in ("ready", "failed"), timeout=60, interval=0.1)
        ready_after = time.monotonic() - started
        await teacher.close()
        await room.close()
    finally:
        await library.close()
        await relay.close()

    record = library.catalog.get(rid)
    assert record["state"] == "ready", record
    first = (record["parts"] or [{}])[0]
    assert first["start"] == 0.0
    lines = {line["name"]: line for line in record["lines"]}
    assert set(lines) == {"share", "stage"}, record["lines"]
    # the timeline starts at the teacher's first packet: times here are lesson seconds
    # minus that small head start, so compare with a tolerance of keyframes and spans
    share, stage = lines["share"], lines["stage"]
    assert len(share["ranges"]) == 1, share
    (s0, s1), = share["ranges"]
    assert abs(s0 - share_on) < 1.2 and abs(s1 - share_off) < 1.2, (share, share_on, share_off)
    assert share["offset"] == s0 and (share["width"], share["height"]) == (448, 252)
    (g0, g1), = stage["ranges"]
    assert abs(g0 - stage_on) < 1.2 and g1 > end - 1.5, (stage, stage_on, end)
    assert (stage["width"], stage["height"]) == (320, 180)  # never above the uplink

    replay = library.catalog.dir_of(rid) / REPLAY_DIR
    for name, (a, b) in (("share", (s0, s1)), ("stage", (g0, g1))):
        frames, samples, seconds = decode_counts(replay / f"{name}.mp4")
        assert frames > 0 and samples == 0, name  # video only: the sound is the lesson's
        assert abs(seconds - (b - a)) < 1.0, (name, seconds, a, b)
        with av.open(str(replay / f"{name}.mp4")) as c:
            assert c.streams.video[0].codec_context.name == "h264"
    # the camera is still the lesson's picture, the whole lesson long
    assert {r["name"] for r in record["renditions"]} >= {"360p", "audio"}
    # the stage classroom's voice is mixed into the lesson's audio (as classrooms heard it)
    mp4 = replay / "lesson.mp4"
    before = tone_ratio(audio_between(mp4, 0.2, max(0.5, stage_on - 0.5)), STAGE_TONE)
    during = tone_ratio(audio_between(mp4, g0 + 0.5, g1 - 0.2), STAGE_TONE)
    assert before < 0.05 and during > 0.2, (before, during)
    print(f"lesson {end:.1f} s, ready {ready_after:.1f} s after its end")
