"""The recording indicator and the consent notice (告知-同意) on the classroom page, in a
real browser: shown while the lesson is recorded, acknowledged once per school by the
local teacher (the catalog keeps who and when), changed when the teacher pauses."""

from __future__ import annotations

import json

import pytest

from tests.e2e.pages import missing_browser_reason, press, wait_until

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCHOOL = "山村小学"

# a teacher's own socket from the teacher page: hello, then one message, its `recording` echo
TEACHER_SAYS = """
async ([token, lesson, type]) => {
  const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws");
  const reply = new Promise((resolve, reject) => {
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "welcome") ws.send(JSON.stringify({ type }));
      if (m.type === "recording" || m.type === "error") { ws.close(); resolve(m); }
    };
    ws.onerror = () => reject(new Error("socket error"));
    ws.onclose = (e) => reject(new Error("socket closed " + e.code));
    setTimeout(() => reject(new Error("no reply")), 15000);
  });
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token, lesson }));
  return reply;
}
"""


def indicator(page) -> dict:
    rec = page.locator("#rec")
    return {"visible": rec.is_visible(), "state": rec.get_attribute("data-state"),
            "text": page.locator("#rec-text").inner_text().strip()}


def consents(server) -> dict:
    try:
        return json.loads((server.library / "catalog.json").read_text("utf-8"))["consents"]
    except (OSError, ValueError, KeyError):
        return {}


def test_indicator_consent_and_pause(server, open_page):
    lesson = "e2e-rec-notice"
    room = open_page(server.page_url("class", lesson, server.token(
        "classroom", lesson, name="一年级1班", school=SCHOOL)))
    other = open_page(server.page_url("class", lesson, server.token(
        "classroom", lesson, name="一年级2班", school=SCHOOL)))
    teacher_token = server.token("teacher", lesson, name="王老师", school="城区一小")
    teach = open_page(server.page_url("teach", lesson, teacher_token, "?res=360"))

    # before the school's first recording: the notice, and no indicator before the lesson
    for page in (room, other):
        wait_until(lambda p=page: p.locator("#consent").is_visible(), 20, "no consent notice")
    assert not room.locator("#rec").is_visible()
    assert consents(server) == {}

    press(teach, "start-lesson")
    wait_until(lambda: indicator(room)["visible"] and indicator(room)["state"] == "recording",
               45, "no recording indicator while the lesson is recorded")
    assert indicator(room)["text"] == "录制中"
    assert room.locator("#consent").is_visible()  # recording does not wait for consent

    # the local teacher acknowledges: the notice goes, in the other room of the school too
    press(room, "recording-consent")
    wait_until(lambda: not room.locator("#consent").is_visible(), 10, "notice stayed")
    wait_until(lambda: not other.locator("#consent").is_visible(), 10,
               "the other room of the school still shows the notice")
    record = wait_until(lambda: consents(server).get(SCHOOL), 10, "consent not in the catalog")
    assert record["by"] == "一年级1班" and record["role"] == "classroom"
    assert record["lesson"] == lesson and record["recording"]
    # a room of that school joining later is not asked again
    late = open_page(server.page_url("class", lesson, server.token(
        "classroom", lesson, name="一年级3班", school=SCHOOL)))
    wait_until(lambda: indicator(late)["state"] == "recording" and indicator(late)["visible"],
               20, "late room: no indicator")
    assert not late.locator("#consent").is_visible()

    # the teacher pauses: every room's indicator says so; resumes: recording again
    reply = teach.evaluate(TEACHER_SAYS, [teacher_token, lesson, "recording-pause"])
    assert reply["type"] == "recording" and reply["state"] == "paused", reply
    for page in (room, late):
        wait_until(lambda p=page: indicator(p)["state"] == "paused", 10, "indicator not paused")
    assert indicator(room) == {"visible": True, "state": "paused", "text": "录制已暂停"}
    reply = teach.evaluate(TEACHER_SAYS, [teacher_token, lesson, "recording-resume"])
    assert reply["state"] == "recording", reply
    wait_until(lambda: indicator(room)["state"] == "recording", 10, "indicator not back")
    assert indicator(room)["text"] == "录制中"

    # the lesson ends: no indicator
    press(teach, "end-lesson")
    wait_until(lambda: not room.locator("#rec").is_visible(), 20, "indicator after the end")
