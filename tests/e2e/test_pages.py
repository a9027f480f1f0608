"""The pages in a real browser: language, bad links, nothing loaded from outside."""

from __future__ import annotations

import time

import pytest

from tests.e2e.pages import (
    INCOMPLETE,
    INVALID,
    WAITING,
    missing_browser_reason,
    status,
    wait_status,
    wait_until,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def only_own_origin(server, page):
    for url in page.requests:
        assert url.startswith((server.base_url, "data:", "blob:")), f"outside asset: {url}"


def test_chinese_by_default_and_english_with_lang_en(server, open_page):
    lesson = "e2e-lang"
    token = server.token("classroom", lesson, name="一年级1班")

    zh = open_page(server.page_url("class", lesson, token))
    wait_status(zh, WAITING)
    assert zh.locator("html").get_attribute("lang") == "zh-CN"
    assert zh.locator('[data-action="raise-hand"]').inner_text().strip() == "举手"
    assert zh.title() == "同步课堂"

    en = open_page(server.page_url("class", lesson, token, "?lang=en"))
    wait_status(en, "Waiting for the teacher to start the lesson")
    assert en.locator("html").get_attribute("lang") == "en"
    assert en.locator('[data-action="raise-hand"]').inner_text().strip() == "Raise hand"
    assert en.title() == "Shared classroom"

    teacher_token = server.token("teacher", lesson)
    teach_en = open_page(server.page_url("teach", lesson, teacher_token, "?lang=en&res=360"))
    wait_until(
        lambda: teach_en.locator('[data-action="start-lesson"]').is_enabled(), 20, "not welcomed"
    )
    assert teach_en.locator("html").get_attribute("lang") == "en"
    assert teach_en.locator('[data-action="start-lesson"]').inner_text().strip() == "Start lesson"
    assert teach_en.locator("h1").inner_text().strip() == "Teacher console"

    teach_zh = open_page(server.page_url("teach", lesson, teacher_token, "?res=360"))
    wait_until(
        lambda: teach_zh.locator('[data-action="start-lesson"]').is_enabled(), 20, "not welcomed"
    )
    assert teach_zh.locator("html").get_attribute("lang") == "zh-CN"
    assert teach_zh.locator('[data-action="start-lesson"]').inner_text().strip() == "开始上课"

    for page in (zh, en, teach_en, teach_zh):
        only_own_origin(server, page)


def _bad_token(server, kind: str, lesson: str) -> str:
    from signaling.auth import mint_token

    if kind == "expired":
        return mint_token(
            server.secret, role="classroom", lesson=lesson, ttl=60, now=time.time() - 3600
        )
    if kind == "forged":
        return mint_token("not-the-server-secret-" + "x" * 20, role="classroom", lesson=lesson)
    if kind == "wrong_lesson":
        return server.token("classroom", "another-lesson")
    if kind == "garbage":
        return "not.a.jwt"
    raise ValueError(kind)


def test_bad_link_says_invalid_and_does_not_retry(server, open_page):
    """Four kinds of bad classroom link and a forged teacher link, all at once (one wait
    for reconnects covers them all)."""
    lesson = "e2e-bad"
    pages = {kind: open_page(server.page_url("class", lesson, _bad_token(server, kind, lesson)))
             for kind in ("expired", "forged", "wrong_lesson", "garbage")}
    from signaling.auth import mint_token

    forged = mint_token("wrong-secret-" + "y" * 24, role="teacher", lesson="e2e-bad-teacher")
    teacher = open_page(server.page_url("teach", "e2e-bad-teacher", forged, "?lang=en&res=360"))
    status = teacher.locator("#status")
    wait_until(lambda: "invalid or has expired" in status.inner_text(), 15, "no invalid message")
    assert status.get_attribute("data-fatal") == "true"
    assert teacher.locator('[data-action="start-lesson"]').is_disabled()
    for kind, page in pages.items():
        wait_status(page, INVALID, timeout=15)
        assert page.locator("#status").get_attribute("data-state") == "fatal", kind
        assert page.locator("#detail").inner_text().strip() == "请向老师索取新的链接。", kind
        assert len(page.sockets) == 1, kind
    # Longer than the first two reconnect delays (0.5 + 1 s; a page that retried would open
    # its next socket 0.5 s after the close): no new socket appears.
    time.sleep(1.6)
    for kind, page in pages.items():
        assert len(page.sockets) == 1, f"the page kept reconnecting with a bad link ({kind})"
        assert page.locator("#status").inner_text().strip() == INVALID, kind
    assert len(teacher.sockets) == 1, "the teacher console kept reconnecting with a forged link"


def test_link_without_token_says_so_and_opens_no_socket(server, open_page):
    page = open_page(server.page_url("class", "e2e-notoken", None))
    wait_status(page, INCOMPLETE, timeout=10)
    assert page.sockets == []


def test_every_page_loads_its_modules_without_a_console_error(server, open_page):
    """The pages are ES modules (docs/pages.md): one failed import, a module served with
    the wrong type or an exception at load shows as a console error or a page error."""
    lesson = "e2e-console"
    teacher = server.token("teacher", lesson)
    urls = {
        "teach": server.page_url("teach", lesson, teacher, "?res=360"),
        "class": server.page_url("class", lesson, server.token("classroom", lesson, name="一班")),
        "answer": server.page_url("answer", lesson, server.token("student", lesson, sub="s1")),
        "library": f"{server.base_url}/library#token={teacher}",
        "report": server.page_url("report", lesson, teacher),
        "replay": f"{server.base_url}/replay/r1?exp=1&sig=x",  # unsigned: says "expired"
    }
    # what each page shows once its script ran (a text only the script sets)
    ready = {
        "teach": lambda p: p.locator('[data-action="start-lesson"]').is_enabled(),
        "class": lambda p: status(p) == WAITING,
        "answer": lambda p: p.locator("#quiz-answer").inner_text().strip() == "等待老师出题…",
        "library": lambda p: p.evaluate("() => window.libraryState().status") == "没有找到课程回放",
        "report": lambda p: p.locator('[data-role="totals"]').count() == 1,
        "replay": lambda p: p.locator("#status").inner_text() == "链接无效或已过期，请重新获取",
    }
    for name, url in urls.items():
        page = open_page(url)
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(f"pageerror {exc}"))
        page.on("console", lambda m, errors=errors: errors.append(m.text)
                if m.type == "error" else None)
        page.reload()  # listeners in place from the first script on
        wait_until(lambda p=page, name=name: ready[name](p), 20, f"{name} page not ready")
        if name == "replay":  # the refused signature is the one expected failed request
            errors = [e for e in errors if "status of 403" not in e and "status of 404" not in e]
        assert errors == [], (name, errors)
        only_own_origin(server, page)
