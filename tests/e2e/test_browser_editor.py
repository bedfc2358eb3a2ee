"""An editor in a real browser (Debian's chromium via Playwright): log in, open the draft,
switch the preview between 600 and 375 px and dark mode, edit, test-send, approve.
Screenshots of the email at both widths are kept in artifacts/."""

from __future__ import annotations

import pytest

from pipeline.content.issues import get_issue
from pipeline.store.db import session_scope
from pipeline.store.models import IssueStatus
from tests.conftest import outbox_messages, seed_issue
from tests.e2e.conftest import ARTIFACTS, shot

PASSWORD = "editor-password-for-tests"


@pytest.fixture
def editor_server(workdir, monkeypatch, request):
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", PASSWORD)
    monkeypatch.setenv("VERDICTS_EDITOR_EMAILS", "ed@verdicts.example.com")
    base, settings = request.getfixturevalue("live_server")
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=2, approved=False)
    return base, settings, issue.id


def _email_frame(page):
    return page.frame_locator("iframe.email")


def _frame_has_no_horizontal_scroll(page) -> bool:
    frame = page.frame(url=lambda url: "/preview" in url)
    return frame.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_editor_previews_edits_test_sends_and_approves_in_a_real_browser(editor_server, browser):
    base, settings, issue_id = editor_server
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    page.goto(f"{base}/editor/issues/{issue_id}")
    assert "/editor/login" in page.url and "Which one should you ship" not in page.content()
    _login_page_is_styled(page)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
    assert page.url.endswith(f"/editor/issues/{issue_id}") or page.url.endswith("/editor")
    page.goto(f"{base}/editor")
    shot(page, "editor-issues")
    page.click(f"a[href='/editor/issues/{issue_id}']")
    page.wait_for_load_state()

    assert page.get_attribute("iframe.email", "width") == "600"
    _email_frame(page).locator("text=Which one should you ship with?").first.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("iframe.email").screenshot(path=str(ARTIFACTS / "editor-email-600.png"))
    shot(page, "editor-issue-desktop")

    page.click("text=Phone 375 px")
    page.wait_for_load_state()
    assert page.get_attribute("iframe.email", "width") == "375"
    _email_frame(page).locator("text=Which one should you ship with?").first.wait_for()
    assert _frame_has_no_horizontal_scroll(page), "the email scrolls sideways at 375 px"
    page.locator("iframe.email").screenshot(path=str(ARTIFACTS / "editor-email-375.png"))

    page.click("text=Dark mode")
    page.wait_for_load_state()
    assert "dark=1" in page.get_attribute("iframe.email", "src")
    page.locator("iframe.email").screenshot(path=str(ARTIFACTS / "editor-email-375-dark.png"))

    page.fill("#subject-input", "Edited in the browser")
    page.fill("#intro-input", "A **fresh** intro written by an editor.")
    page.click("button:has-text('Save and re-render')")
    page.wait_for_load_state()
    assert page.inner_text("[data-testid=subject]") == "Edited in the browser"
    _email_frame(page).locator("strong:has-text('fresh')").wait_for()
    assert "A fresh intro written by an editor." in page.inner_text("[data-testid=text]").replace("**", "")

    page.click("button:has-text('Send a [TEST] copy')")
    page.wait_for_load_state()
    assert "Test copy sent" in page.content()
    [test_copy] = outbox_messages(settings, next(settings.outbox_dir.iterdir()).name)
    assert test_copy["Subject"] == "[TEST] Edited in the browser"

    page.click("button:has-text('Approve')")
    page.wait_for_load_state()
    assert page.inner_text("[data-testid=status]") == "approved"
    assert page.is_disabled("#subject-input")
    _locked_save_looks_disabled(page)
    with session_scope(settings.database_url) as session:
        assert get_issue(session, issue_id).status is IssueStatus.approved

    phone = browser.new_page(viewport={"width": 375, "height": 800})
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{base}/editor/issues/{issue_id}?width=375")
    shot(phone, "editor-issue-phone")


def _login_page_is_styled(page) -> None:
    """The first editor screen: a full-width password box under its own label, the button after it."""
    shot(page, "editor-login")
    field = page.locator("#password")
    assert field.bounding_box()["width"] >= 0.8 * page.locator("main").bounding_box()["width"] - 80
    assert page.locator("label[for=password]").inner_text() == "Password"
    assert page.evaluate("document.querySelector('#password').labels[0].textContent") == "Password"
    assert page.evaluate("document.activeElement.id") == "password"  # focused on arrival
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Log in"
    page.fill("#password", "wrong")
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
    error = page.locator("[role=alert]")
    assert "not right" in error.inner_text() and page.get_attribute(
        "#password", "aria-describedby"
    ) == error.get_attribute("id")
    shot(page, "editor-login-error")


def _locked_save_looks_disabled(page) -> None:
    """A sent or approved issue's save button: disabled, and it looks it (grey, no pointer), unlike a live one."""
    save = page.locator("button:has-text('Save and re-render')")
    assert save.is_disabled() and save.get_attribute("aria-disabled") == "true"
    look = save.evaluate("b => { const s = getComputedStyle(b); return [s.cursor, s.opacity, s.backgroundColor]; }")
    live = page.locator("button:has-text('Unapprove'), button:has-text('Cancel the scheduled send')").first.evaluate(
        "b => getComputedStyle(b).backgroundColor"
    )
    assert look[0] == "not-allowed" and float(look[1]) < 1 and look[2] != live, look
    save.screenshot(path=str(ARTIFACTS / "editor-save-disabled.png"))


def test_reloading_the_page_a_form_led_to_posts_nothing_again(editor_server, browser):
    """POST/redirect/GET in a real browser: after a build (even one that built nothing) and an edit, a reload
    is a GET of the page the form led to; no form is sent twice."""
    base, settings, issue_id = editor_server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{base}/editor/login")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
    for click in ("Build this week's draft now", "Save and re-render"):
        if click == "Save and re-render":
            page.goto(f"{base}/editor/issues/{issue_id}")
            page.fill("#subject-input", "Saved once")
        sent = len(posts)
        page.click(f'button:has-text("{click}")')
        page.wait_for_load_state()
        page.reload()
        page.wait_for_load_state()
        assert len(posts) == sent + 1, posts[sent:]
    assert page.inner_text("[data-testid=subject]") == "Saved once"
