"""The learning report page in Chromium for the scripted lesson of tests/quiz/report_script.py
(skips, a classroom that never answers, a question nobody answers): the figures shown, the
localized question types and the title (lesson title, date, teacher, school) in zh and en;
JSON and CSV links; the print stylesheet hides the buttons."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import layout
from tests.e2e.conftest import ServerProcess
from tests.e2e.pages import missing_browser_reason, wait_until
from tests.quiz import report_script as script

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ServerProcess]:
    srv = ServerProcess(["--no-recording"], Path(tempfile.mkdtemp(prefix="classroom-report-")))
    srv.start()
    failure: list[BaseException] = []

    def play() -> None:  # its own thread: the sync Playwright API owns this one's loop
        try:
            asyncio.run(script.run_script(srv))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            failure.append(exc)

    thread = threading.Thread(target=play)
    thread.start()
    thread.join(60)
    if failure or thread.is_alive():
        srv.stop()
        raise AssertionError(f"the scripted lesson failed: {failure!r}\n{srv.log_tail()}")
    yield srv
    srv.stop()


def cells(page: Any, selector: str) -> list[str]:
    return [c.strip() for c in page.locator(selector + " td").all_inner_texts()]


def open_report(srv: ServerProcess, open_page: Any, query: str = "") -> Any:
    page = open_page(srv.page_url("report", script.LESSON,
                                  srv.token("teacher", script.LESSON), query))
    wait_until(lambda: page.locator('[data-role="questions"]').count() == 1, 20,
               "the report never rendered")
    return page


def test_the_report_page_shows_the_scripted_lessons_figures(scripted_server, open_page):
    srv = scripted_server
    zh = open_report(srv, open_page)
    title = zh.locator("#title").inner_text()
    assert title == f"学情报告 · {script.TITLE}" and script.LESSON not in title
    meta = zh.locator("#meta").inner_text()
    assert f"主讲老师: {script.TEACHER}" in meta and f"学校: {script.SCHOOL}" in meta
    assert "日期: 20" in meta
    totals = zh.locator('[data-role="totals"]').inner_text()
    assert "作答数: 9/20" in totals and "未作答: 11" in totals and "34%" in totals

    # per question: answered/expected, unanswered, right, accuracy of answers and of all
    q1 = cells(zh, '[data-question="q1"]')
    assert q1[1:7] == ["单选题", "3/4", "1", "9/12", "75%", "45%"], q1
    assert cells(zh, '[data-question="q3"]')[1] == "多选题"
    assert cells(zh, '[data-question="q2"]')[1] == "判断题"
    assert cells(zh, '[data-question="q4"]')[1] == "填空题"
    q5 = cells(zh, '[data-question="q5"]')
    assert q5[1:7] == ["数值题", "0/4", "4", "—", "无人作答", "无人作答"], q5
    assert zh.locator('[data-question="q5"]').get_attribute("data-unanswered") == "true"
    # the chart draws no bar for q5 (not a 0 % bar)
    groups = zh.locator('[data-role="accuracy-chart"] g')
    assert groups.count() == 5 and groups.nth(4).get_attribute("data-value") == "none"
    assert groups.nth(4).locator("rect").count() == 0

    # every expected classroom and pupil, skips counted against the score
    s1 = cells(zh, '[data-role="students"] [data-id="s1"]')
    assert s1 == ["小明", "山村小学", "4/5", "1", "100%", "4 / 5", "80%"], s1
    room_b = cells(zh, '[data-role="classrooms"] [data-id="room-b"]')
    assert room_b == ["二班", "河边小学", "0/5", "5", "—", "0 / 5", "0%"], room_b
    assert "二班" in zh.locator('[data-role="unanswered-rooms"]').inner_text()

    # JSON and CSV as links (blob: URLs, no token in them), the buttons hidden in print
    for link in ("#json-link", "#csv-link"):
        wait_until(lambda link=link: zh.locator(link).is_visible(), 10, f"{link} not shown")
        href = zh.locator(link).get_attribute("href") or ""
        assert href.startswith("blob:"), href
    assert zh.locator("#json-link").get_attribute("download") == f"report-{script.LESSON}.json"
    zh.emulate_media(media="print")
    assert not zh.locator(".actions").is_visible()
    zh.emulate_media(media="screen")

    # a phone: the charts and tables fit or scroll inside their own box, the page does not
    zh.set_viewport_size({"width": 390, "height": 844})
    layout.settle(zh)
    layout.screenshot(zh, "report-zh-390x844")
    wide = layout.overflow(zh)
    assert wide == [], f"the report is wider than a phone: {wide}"
    chart = zh.locator('[data-role="accuracy-chart"]').bounding_box()
    assert chart and chart["width"] <= 390, chart

    en = open_report(srv, open_page, "?lang=en")
    assert en.locator("#title").inner_text() == f"Learning report · {script.TITLE}"
    assert f"Teacher: {script.TEACHER}" in en.locator("#meta").inner_text()
    assert [cells(en, f'[data-question="q{i}"]')[1] for i in range(1, 6)] == [
        "Single choice", "True / false", "Multiple choice", "Fill in the blank", "Numeric"]
    assert cells(en, '[data-question="q5"]')[5] == "nobody answered"
    assert en.locator("#json-link").inner_text() == "Download JSON"
