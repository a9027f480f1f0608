"""Chapters from lesson events: stage (issue 7's ``stage {peer_id, name, school, at}``),
practice and tests, resume; re-sent events do not make duplicate chapters."""

from __future__ import annotations

from recording.chapters import append_event, chapters_from_events, read_events


def stage(t: int, peer: str | None, name: str = "", school: str = "") -> dict:
    return {"t": t, "type": "stage", "peer_id": peer, "name": name, "school": school,
            "at": 1_700_000_000.0 + t / 1000}


def test_stage_events_become_on_stage_chapters():
    events = [
        stage(12_000, "p-1", "一年级1班", "山村小学"),
        stage(14_000, "p-1", "一年级1班", "山村小学"),  # announced again: same chapter
        stage(20_000, None),  # the stage is cleared: no chapter
        stage(22_000, "p-2", "", "河口教学点"),  # no name: the school names it
        stage(23_000, "p-3", "二年级"),  # another classroom right away: its own chapter
        stage(40_000, "p-1", "一年级1班"),  # back on stage later: a new chapter
        {"t": 50_000, "type": "hand", "peer_id": "p-2", "raised": True},  # not a chapter
        stage(70_000, "p-4", "too late"),  # after the end of the recording
    ]
    chapters = chapters_from_events(events, duration_ms=60_000, offset_ms=2_000)
    assert [(c["start"], c["title"], c["kind"], c["ref"]) for c in chapters] == [
        (0.0, "开始上课", "start", ""),
        (10.0, "上台：一年级1班", "stage", "p-1"),
        (20.0, "上台：河口教学点", "stage", "p-2"),
        (21.0, "上台：二年级", "stage", "p-3"),
        (38.0, "上台：一年级1班", "stage", "p-1"),
    ]


def test_practice_tests_and_resume_with_resent_events_dropped():
    rnd = {"round_id": "r-1", "title": "分数的意义"}
    events = [
        {"t": 5_000, "type": "quiz-question", "round": rnd},
        {"t": 6_000, "type": "quiz-question", "round": rnd},  # re-sent within 5 s
        {"t": 7_000, "type": "quiz-test", "round": {
            "round_id": "t-1", "questions": [{"text": "1/2 + 1/4 = ?"}]}},
        {"t": 30_000, "type": "recording-resumed"},
    ]
    chapters = chapters_from_events(events, 60_000)
    titles = [c["title"] for c in chapters]
    # one language each: the page builds its own from kind + label (strings.js)
    assert [(c["kind"], c["label"]) for c in chapters] == [
        ("start", ""), ("practice", "分数的意义"), ("test", "1/2 + 1/4 = ?"), ("resume", "")]
    assert titles == ["开始上课", "练习：分数的意义",
                      "测试：1/2 + 1/4 = ?", "继续录制"]


def test_events_file_round_trip_skips_torn_lines(tmp_path):
    append_event(tmp_path, stage(3_000, "p-9", "三年级"))
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b'{"t": 4000, "type": "sta')  # killed mid-write
    append_event(tmp_path, {"t": 1_000, "type": "recording-resumed"})
    events = read_events(tmp_path)
    assert [e["t"] for e in events] == [1_000, 3_000]
    assert chapters_from_events(events, 10_000)[-1]["title"] == "上台：三年级"
