"""Providers that merge on their side send one body per request: a request holds readers of one line-up."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.lineup_seed import lineup_issue, lineup_of
from tests.pipeline.delivery.providers.conftest import send


@pytest.mark.parametrize("name", ["mailgun", "sendgrid"])
def test_a_merged_request_never_mixes_line_ups(api, workdir, name):
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1")
    issue, expected = lineup_issue(settings, workdir, readers=40)  # the line-ups interleaved by reader id
    summary = send(settings, issue.id)
    assert fake.violations == [] and summary.sent == 40
    by_request = defaultdict(list)
    for m in fake.accepted:
        # Mailgun gives every message of a request the request's id; SendGrid the request's id plus a suffix.
        by_request[m.provider_message_id.rsplit(".", 1)[0] if name == "sendgrid" else m.provider_message_id].append(m)
    for messages in by_request.values():
        assert len({tuple(lineup_of(m.text)) for m in messages}) == 1
    assert {m.to: lineup_of(m.text) for m in fake.accepted} == expected
    # One claimed batch of 40 readers, four line-ups: four requests, not one per change of line-up.
    assert len([r for r in fake.requests if r.method == "POST"]) == len(by_request) == 4
