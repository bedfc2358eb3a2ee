"""The welcome email in a real browser (Debian's chromium via Playwright): the editor opens it from the issues
list, sees it in the sandboxed preview at 600 and 375 px without sideways scrolling, and sends a [TEST] copy."""

from __future__ import annotations

import re

import pytest

from pipeline.delivery.welcome import CAMPAIGN
from pipeline.email.personal import html_values
from pipeline.email.render import Recipient
from pipeline.email.welcome import render_welcome, welcome_values
from tests.conftest import link_in, outbox_messages, settled_outbox
from tests.e2e.test_browser_editor import PASSWORD, _frame_has_no_horizontal_scroll, editor_server  # noqa: F401


def test_the_editor_previews_the_welcome_and_test_sends_it_in_a_real_browser(editor_server, browser):  # noqa: F811
    base, settings, _ = editor_server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/editor/login")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
    page.goto(f"{base}/editor")
    page.click("a[href='/editor/welcome']")
    page.wait_for_load_state()
    frame = page.frame_locator("iframe.email")
    frame.locator("text=Your vote counts").first.wait_for()
    assert frame.locator("a:has-text('Unsubscribe')").count() == 1
    assert _frame_has_no_horizontal_scroll(page)
    page.click("text=Phone 375 px")
    page.wait_for_load_state()
    frame.get_by_text("What to expect", exact=True).wait_for()
    assert page.get_attribute("iframe.email", "width") == "375" and _frame_has_no_horizontal_scroll(page)
    page.click("button:has-text('Send a [TEST] copy')")
    page.wait_for_load_state()
    assert "Test copy sent." in page.content()
    [mail] = outbox_messages(settings, CAMPAIGN)
    assert mail["Subject"].startswith("[TEST] Welcome to")


def test_a_reader_confirms_with_the_button_and_the_welcomes_links_open_in_a_real_browser(live_server, browser):
    base, settings = live_server
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(f"{base}/subscribe")
    page.fill("input[name=email]", "bea@example.com")
    page.fill("input[name=name]", "Bea")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(link_in(settled_outbox(settings)[-1], "/confirm/"))
    assert outbox_messages(settings, CAMPAIGN) == []  # the link's page welcomes nobody: the button does
    page.click("button:has-text('Confirm my subscription')")
    page.wait_for_load_state()
    assert "You’re in" in page.content()
    [welcome] = settled_outbox(settings, CAMPAIGN)
    assert welcome["To"] == "Bea <bea@example.com>" and welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    page.goto(link_in(welcome, "/preferences/"))
    assert "bea@example.com" in page.content() or "b***@example.com" in page.content()
    html = welcome.get_body(preferencelist=("html",)).get_content()
    archive = re.search(r'href="([^"]+/issues)"', html).group(1)
    assert page.goto(archive).status == 200 and "bea@example.com" not in page.content()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_every_text_of_the_welcome_is_readable_in_both_colour_schemes(browser, session, settings, scheme):
    from tests.e2e.test_dark_mode import _assert_readable, _open

    body = render_welcome(session, settings).body
    html = body.html.fill(html_values(welcome_values(settings, Recipient(1, "a@example.com", "Ada"))))
    _assert_readable(_open(browser, html, scheme), f"welcome-{scheme}", least=10)
