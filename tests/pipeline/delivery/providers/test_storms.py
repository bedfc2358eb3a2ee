"""A storm of provider faults in one send: throttling with and without Retry-After, 5xx,
reset connections, slow answers, a malformed answer and per-message rejections, under a
configured pace. The send finishes, keeps the pace, and reports what failed and why."""

from __future__ import annotations

from collections import Counter

from pipeline.store.models import DeliveryStatus
from tests.fakes.provider_api import Fault
from tests.pipeline.delivery.providers.conftest import ledger, new_issue, send

READERS, BATCH, RATE = 60, 5, 40.0
STORM = [
    Fault.status(429, retry_after=0.1),
    Fault.status(429),
    Fault.status(503),
    Fault("none"),
    Fault.status(500),
    Fault.drop(),
    Fault("none"),
    Fault.reject(1, 3),
    Fault.slow(0.3),
    Fault.status(502),
    Fault.status(429, retry_after=0.05),
    Fault.garbage(),
    Fault.drop(),
    Fault.status(503),
    Fault.reject(0),
    Fault("none"),
]


def test_a_storm_of_faults_finishes_at_the_configured_pace_and_reports_every_failure(api, workdir, verdicts):
    fake, settings = api(
        "resend",
        VERDICTS_PROVIDER_CONCURRENCY="1",
        VERDICTS_BATCH_SIZE=str(BATCH),
        VERDICTS_RATE_PER_SECOND=str(RATE),
        VERDICTS_PROVIDER_RETRY_ATTEMPTS="4",
    )
    issue = new_issue(settings, workdir, READERS)
    fake.fail_next(*STORM)

    summary = send(settings, issue.id)

    # Every reader has exactly one copy, except the three the provider refused for good.
    copies = Counter(m.to for m in fake.accepted)
    assert max(copies.values()) == 1 and len(copies) == READERS - 3
    rows = ledger(settings)
    failed = {email: d.error for email, d in rows.items() if d.status is DeliveryStatus.failed}
    assert len(failed) == 3 and all("inactive" in reason for reason in failed.values())
    assert not set(failed) & set(copies)
    # The malformed answer came after the provider accepted its batch: unknown, never re-sent.
    unknown = [email for email, d in rows.items() if d.status is DeliveryStatus.unknown]
    assert len(unknown) == BATCH and all(copies[e] == 1 for e in unknown)
    assert summary.finished and (summary.sent, summary.failed, summary.unknown) == (READERS - 3 - BATCH, 3, BATCH)
    assert "failed 3" in summary.line() and f"{BATCH} deliveries with unknown outcome" in summary.line()

    # The pace held through the retries: messages accepted per second, first to last request.
    accepted = [r for r in fake.requests if r.status == 200 and r.messages]
    rate = (sum(r.messages for r in accepted) - accepted[0].messages) / (accepted[-1].at - accepted[0].at)
    assert rate <= RATE * 1.05, f"{rate:.1f} messages/s against a pace of {RATE}"
    assert (
        sum(1 for r in fake.requests if r.status != 200) == 9
    )  # every throttle, 5xx and reset of the storm hit a request

    shown = verdicts("issue", "show", str(issue.id)).out
    assert "failed 3" in shown and f"unknown {BATCH}" in shown
    assert "is inactive" in shown and "not its API's" in shown  # each reason, as the provider said it
