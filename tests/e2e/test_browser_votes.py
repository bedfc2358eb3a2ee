"""A reader votes from the email in a real browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import re

from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope
from pipeline.store.models import Vote
from tests.conftest import outbox_messages, seed_issue
from tests.e2e.conftest import shot


def test_reader_votes_from_the_email_and_changes_their_mind(live_server, browser, workdir):
    base, settings = live_server
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=1)
    send_issue(settings, issue.id, OutboxProvider(settings))
    [message] = outbox_messages(settings, f"{issue.id}-{issue.week}")
    html = message.get_body(preferencelist=("html",)).get_content()
    ship = re.search(r'href="(http://[^"]+/vote/[^"]+/ship)"', html).group(1)

    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(ship)  # what a link scanner would do too: nothing is recorded yet
    shot(page, "vote-confirm-phone")
    with session_scope(settings.database_url) as session:
        assert session.exec(select(Vote)).all() == []
    page.click("button:has-text('Ship it')")
    page.wait_for_load_state()
    assert "gets your ship" in page.content()
    splits = page.inner_text("[data-testid=splits]")
    assert "80% ship · 5 votes" in splits  # imported 3/1 plus this one
    shot(page, "vote-done-phone")
    page.click("button:has-text('instead')")
    page.wait_for_load_state()
    assert "You changed your vote from ship to skip" in page.content()
    assert "60% ship · 5 votes" in page.inner_text("[data-testid=splits]")
    with session_scope(settings.database_url) as session:
        [vote] = session.exec(select(Vote)).all()
        assert vote.verdict == "skip" and vote.issue_id == issue.id
