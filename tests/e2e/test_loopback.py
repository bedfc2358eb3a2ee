"""The subscriber journey over real HTTP on loopback, the way a mailbox provider and a reader meet it."""

from __future__ import annotations

import re

import httpx
import pytest

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from subscribers.lookup import get_by_email
from subscribers.models import SubscriberStatus
from tests.conftest import link_in, outbox_messages, seed_issue, settled_outbox


def test_signup_confirm_receive_one_click_unsubscribe_over_http(live_server, tmp_path):
    base, settings = live_server
    from pipeline.store.db import session_scope

    with httpx.Client(base_url=base, follow_redirects=False) as http:
        form = http.get("/subscribe")
        assert form.status_code == 200 and form.headers["content-security-policy"]
        signed_up = http.post("/subscribe", data={"email": "live@example.com", "name": "Liv"})
        assert signed_up.status_code == 303 and signed_up.headers["location"] == "/subscribe/check-inbox"
        assert "Check your inbox" in http.get(signed_up.headers["location"]).text
        confirm_url = link_in(settled_outbox(settings)[0], "/confirm/")
        assert confirm_url.startswith(base)
        shown = http.get(confirm_url)  # the page asks, with one button; only its POST confirms
        assert shown.status_code == 200 and "Confirm my subscription" in shown.text
        pressed = http.post(confirm_url)
        assert pressed.status_code == 303 and confirm_url.endswith(pressed.headers["location"])
        assert "You’re in" in http.get(pressed.headers["location"]).text

        with session_scope(settings.database_url) as session:
            issue = seed_issue(session, tmp_path, readers=0)
        assert send_issue(settings, issue.id, OutboxProvider(settings)).sent == 1
        [mail] = outbox_messages(settings, f"{issue.id}-{issue.week}")
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        one_click = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", mail["List-Unsubscribe"]).group(1)
        # What Gmail does: a bare POST with the one-click body, no cookies, no redirects followed.
        answer = http.post(
            one_click,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200

    with session_scope(settings.database_url) as session:
        assert get_by_email(session, "live@example.com").status is SubscriberStatus.unsubscribed


@pytest.fixture
def many_sign_ups_per_network(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_SIGNUP_LIMIT_PER_IP", "1000")  # the per-address limit is the one under test


def test_the_same_sign_up_sent_many_times_at_once_emails_the_address_no_more_than_its_limit(
    many_sign_ups_per_network, live_server
):
    """A double click, or someone flooding a victim's inbox: every request gets the same page, none a 500,
    and the address gets at most SIGNUP_LIMIT_PER_ADDRESS confirmation emails."""
    from concurrent.futures import ThreadPoolExecutor

    base, settings = live_server
    with httpx.Client(base_url=base) as http, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: http.post("/subscribe", data={"email": "victim@example.com"}), range(24)))
    assert {a.status_code for a in answers} == {303}
    assert {a.headers["location"] for a in answers} == {"/subscribe/check-inbox"}
    assert 1 <= len(settled_outbox(settings)) <= settings.signup_limit_per_address
