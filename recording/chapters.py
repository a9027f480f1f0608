"""Chapters from lesson events: what happened in the lesson, on the recording's timeline.

The recording feature appends the lesson events it hears to ``events.jsonl`` in the
recording's folder (``{"t": ms, "type": ..., ...}``, ``t`` on the recording's timeline);
:func:`chapters_from_events` turns them into chapters ``{start, title, kind, ref}``:
the lesson start, each practice question pushed (``quiz-question``), each test opened
(``quiz-test``), each classroom called on stage (the ``stage {peer_id, name, school, at}``
lesson event of the two-way lesson, docs/two-way.md: "上台：<name>"; ``peer_id``
null clears the stage and starts no chapter; the same classroom announced again while it
is still on stage is not a new chapter), and the recording resuming after a pause. The
same chapter again (same kind and reference) within ``min_gap`` seconds is dropped (a
re-sent event); two different classrooms called in quick succession are two chapters.
A recording that continues after a server restart starts a chapter at each new part.

A chapter's ``title`` is in the default language (zh-CN, for ``chapters.vtt``); pages show
their own language from ``kind`` and ``label`` (the question or the classroom), never both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"

CHAPTER_TYPES = {"quiz-question", "quiz-test", "stage", "recording-resumed", "recording-part"}
KIND_TITLES = {"start": "开始上课", "practice": "练习", "test": "测试", "stage": "上台",
               "resume": "继续录制", "part": "重启后继续"}
"""The zh-CN name of each chapter kind (the pages have both languages in strings.js)."""


def title_of(kind: str, label: str) -> str:
    return f"{KIND_TITLES[kind]}：{label}" if label else KIND_TITLES[kind]


def vtt_time(ms: float) -> str:
    ms = max(0, int(ms))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


def append_event(directory: Path, event: dict[str, Any]) -> None:
    """Append one event line with a single write; never glued onto a torn last line."""
    line = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    fd = os.open(Path(directory) / EVENTS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # the last write was cut short (a kill)
        os.write(fd, line)
    finally:
        os.close(fd)


def read_events(directory: Path) -> list[dict[str, Any]]:
    try:
        raw = (Path(directory) / EVENTS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    events = []
    for line in raw.split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("t"), (int, float)):
            events.append(event)
    return sorted(events, key=lambda e: e["t"])


def _text(value: Any, limit: int = 80) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def chapter_for(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(kind, label, ref)`` of the chapter an event starts, or None."""
    kind = event.get("type")
    if kind in ("quiz-question", "quiz-test"):
        rnd = event.get("round") if isinstance(event.get("round"), dict) else {}
        title = _text(rnd.get("title"))
        if not title:
            questions = rnd.get("questions") if isinstance(rnd.get("questions"), list) else []
            if questions and isinstance(questions[0], dict):
                title = _text(questions[0].get("text"))
        return ("practice" if kind == "quiz-question" else "test", title,
                _text(rnd.get("round_id"), 64))
    if kind == "stage":
        if event.get("on_stage") is False or not _text(event.get("peer_id")):
            return None
        name = _text(event.get("name")) or _text(event.get("school"))
        return "stage", name, _text(event.get("peer_id"), 64)
    if kind == "recording-resumed":
        return "resume", "", ""
    if kind == "recording-part":
        return "part", "", str(event.get("part") or "")
    return None


def chapters_from_events(events: list[dict[str, Any]], duration_ms: int,
                         offset_ms: int = 0, min_gap: float = 5.0) -> list[dict[str, Any]]:
    """Chapters ``{start, title, kind, label, ref}`` (seconds from the recording's start)."""
    chapters: list[dict[str, Any]] = [
        {"start": 0.0, "title": KIND_TITLES["start"], "kind": "start", "label": "", "ref": ""}]
    on_stage = ""  # the classroom on stage now (its peer id)
    for event in events:
        if event.get("type") == "stage":
            peer = _text(event.get("peer_id"), 64)
            was, on_stage = on_stage, ("" if event.get("on_stage") is False else peer)
            if peer and peer == was:
                continue  # announced again while still on stage: not a new chapter
        found = chapter_for(event)
        if found is None:
            continue
        start = round(max(0.0, (event["t"] - offset_ms) / 1000), 3)
        if start >= duration_ms / 1000:
            continue
        kind, label, ref = found
        last = chapters[-1]
        if start - last["start"] < min_gap and last["kind"] == kind and last["ref"] == ref:
            continue  # the same thing again right away (a re-sent event)
        chapters.append({"start": start, "title": title_of(kind, label), "kind": kind,
                         "label": label, "ref": ref})
    return chapters
