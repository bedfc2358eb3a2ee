"""A real browser (Debian's chromium, driven by Playwright): sign-up, confirmation, preferences
and unsubscribe pages at phone and desktop widths. Screenshots are kept in artifacts/."""

from __future__ import annotations

import pytest

from subscribers.lookup import get_by_email
from subscribers.models import SubscriberStatus
from tests.conftest import link_in, outbox_messages, settled_outbox
from tests.e2e.conftest import shot as _shot

WIDTHS = {"phone": 375, "desktop": 1280}


@pytest.mark.parametrize("device", WIDTHS)
def test_subscriber_journey_in_a_real_browser(live_server, browser, device):
    base, settings = live_server
    from pipeline.store.db import session_scope

    page = browser.new_page(viewport={"width": WIDTHS[device], "height": 800})
    email = f"browser-{device}@example.com"

    page.goto(f"{base}/subscribe")
    box = page.locator("input[name=website]").bounding_box()
    assert box is None or box["x"] + box["width"] <= 0  # the honeypot stays out of sight
    page.fill("input[name=email]", "not an address")
    page.evaluate("document.querySelector('form').noValidate = true")
    page.click("button[type=submit]")
    assert "does not look like an email address" in page.content()
    _shot(page, f"subscribe-error-{device}")
    page.fill("input[name=email]", email)
    page.fill("input[name=name]", "Bea")
    _shot(page, f"subscribe-{device}")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "Check your inbox" in page.content()
    _shot(page, f"check-inbox-{device}")
    page.reload()  # POST/redirect/GET: the reload shows the page again and signs nobody up twice
    page.wait_for_load_state()
    assert "Check your inbox" in page.content() and len(posts) == 1 and len(settled_outbox(settings)) == 1

    confirm = link_in(outbox_messages(settings)[-1], "/confirm/")
    page.goto(confirm)  # what a mail scanner sees too: a question and one button
    assert "Confirm my subscription" in page.content() and "b***@example.com" in page.content()
    _shot(page, f"confirm-{device}")
    with session_scope(settings.database_url) as session:
        assert get_by_email(session, email).status is SubscriberStatus.pending  # opening the link is not confirming
    page.click("button:has-text('Confirm my subscription')")
    page.wait_for_load_state()
    assert page.url == confirm and "You’re in" in page.content() and "confirmed" in page.content()
    _shot(page, f"confirmed-{device}")
    with session_scope(settings.database_url) as session:
        assert get_by_email(session, email).status is SubscriberStatus.confirmed
    page.reload()  # POST/redirect/GET: the reload shows the page again and posts nothing
    page.wait_for_load_state()
    assert "You’re in" in page.content() and len(posts) == 2
    page.click("text=Manage your subscription")
    page.wait_for_load_state()
    assert "/preferences/" in page.url
    page.select_option("select[name=weeks]", "2")
    page.click("button:has-text('Pause')")
    page.wait_for_load_state()
    assert "Paused until" in page.content()
    _shot(page, f"preferences-{device}")
    preferences = page.url.split("?")[0]

    with session_scope(settings.database_url) as session:
        sub = get_by_email(session, email)
        from pipeline.email.render import reader_url
        from subscribers.tokens import UNSUBSCRIBE

        unsubscribe = reader_url(settings, UNSUBSCRIBE, sub.id)
    page.goto(unsubscribe)
    assert "Unsubscribe?" in page.content()
    _shot(page, f"unsubscribe-{device}")
    with session_scope(settings.database_url) as session:
        assert get_by_email(session, email).status is SubscriberStatus.confirmed  # viewing is not leaving
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_load_state()
    assert "unsubscribed" in page.content()
    _shot(page, f"unsubscribed-{device}")
    with session_scope(settings.database_url) as session:
        assert get_by_email(session, email).status is SubscriberStatus.unsubscribed
    page.goto(preferences)
    assert "Resubscribe" in page.content()
