"""Providers that merge on their side (Mailgun, SendGrid) fill each reader's "Forward this verdict" link too:
one request for the batch, and every copy carries its own reader's referral code."""

from __future__ import annotations

import pytest

from pipeline.email.render import web_url
from subscribers.tokens import read_referral
from tests.pipeline.delivery.providers.conftest import ledger, new_issue, send
from tests.pipeline.email.test_forward_link import HTML_LINK, TEXT_LINK


@pytest.mark.parametrize("name", ["mailgun", "sendgrid"])
def test_a_merged_batch_gives_each_reader_their_own_forward_link(api, workdir, name):
    fake, settings = api(name)
    issue = new_issue(settings, workdir, 5)
    assert send(settings, issue.id).sent == 5
    assert len([r for r in fake.requests if r.method == "POST"]) == 1  # merged: one request for the batch
    rows = ledger(settings)
    secret = settings.secret_key.get_secret_value()
    assert len(fake.accepted) == 5
    for m in fake.accepted:
        [in_html], [in_text] = HTML_LINK.findall(m.html), TEXT_LINK.findall(m.text)
        assert in_html == in_text
        page, _, code = in_text.partition("?ref=")
        assert page == web_url(settings, issue.week)
        assert read_referral(secret, code) == rows[m.to].subscriber_id
