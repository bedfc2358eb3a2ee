"""A reader forwards a verdict and a friend follows it to the sign-up, in a real browser (Debian's chromium via
Playwright): the referral code travels from the email through the web version to the sign-up page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope
from subscribers.tokens import read_referral
from tests.conftest import link_in, outbox_messages, seed_issue
from tests.e2e.conftest import shot


def test_a_friend_follows_a_forwarded_verdict_to_the_sign_up_with_the_readers_code(live_server, browser, workdir):
    base, settings = live_server
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=1)
    send_issue(settings, issue.id, OutboxProvider(settings))
    [message] = outbox_messages(settings, f"{issue.id}-{issue.week}")
    html = message.get_body(preferencelist=("html",)).get_content()
    forwarded = re.search(r'<a href="([^"]+)"[^>]*>Forward this verdict', html).group(1)
    code = parse_qs(urlsplit(forwarded).query)["ref"][0]
    reader = read_referral(settings.secret_key.get_secret_value(), code)
    assert reader is not None

    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(forwarded)  # the friend opens the link the reader passed on
    shot(page, "web-version-shared-phone")
    assert page.get_by_role("link", name="Forward this verdict").get_attribute("href") == forwarded
    page.get_by_role("link", name="Get verdicts like this one every week").first.click()
    page.wait_for_load_state()
    landed = urlsplit(page.url)
    assert landed.path == "/subscribe" and parse_qs(landed.query) == {"source": ["cmp-0"], "ref": [code]}

    # The reader's preferences page offers the same link to the latest issue.
    page.goto(link_in(message, "/preferences/"))
    assert "0 readers have joined through you." in page.content()
    assert page.get_by_role("link", name="Forward this verdict").get_attribute("href") == forwarded
    shot(page, "preferences-share-phone")
