"""Payloads the providers really sent (recorded_payloads.py), signed with test keys and posted to the real
app: each is stored as the kind it is, suppresses exactly the readers it should, with the right reason,
and a provider's retry is stored once however it is signed."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.store.db import session_scope
from subscribers.consent import suppression
from subscribers.lookup import get_by_email
from subscribers.models import SubscriberStatus
from tests.conftest import db_snapshot
from tests.pipeline.delivery.providers import recorded_payloads as rec
from tests.pipeline.delivery.providers import webhook_fixtures as fx

READER = "reader1@example.com"


def _signed(keys: fx.Keys, provider: str, payload: object) -> tuple[dict, bytes]:
    payload = rec.addressed(payload, READER)
    if provider == "mailgun":
        return fx.mailgun_signed(keys, payload)
    if provider == "sendgrid":
        return fx.sendgrid_signed(keys, json.dumps([payload]).encode())
    if provider == "postmark":
        return fx.postmark_signed(keys, payload)
    if provider == "resend":
        return fx.resend_signed(keys, json.dumps(payload).encode())
    return fx.ses_signed(keys, payload if isinstance(payload, str) else json.dumps(payload))


# (provider, payload, the kind stored, the suppression reason afterwards: None = not suppressed)
CASES = [
    ("mailgun", rec.MAILGUN_FAILED_PERMANENT, "bounced", "bounce"),
    ("mailgun", rec.MAILGUN_FAILED_TEMPORARY, "other", None),
    ("mailgun", rec.MAILGUN_GAVE_UP_OVER_QUOTA, "soft_bounced", None),
    ("mailgun", rec.MAILGUN_COMPLAINED, "complained", "complaint"),
    ("mailgun", rec.MAILGUN_UNSUBSCRIBED, "unsubscribed", "unsubscribed"),
    ("mailgun", rec.mailgun_suppressed("suppress-bounce"), "bounced", "bounce"),
    ("mailgun", rec.mailgun_suppressed("suppress-complaint"), "complained", "complaint"),
    ("mailgun", rec.mailgun_suppressed("suppress-unsubscribe"), "unsubscribed", "unsubscribed"),
    ("sendgrid", rec.SENDGRID_BOUNCE, "bounced", "bounce"),
    ("sendgrid", rec.SENDGRID_DROPPED_INVALID, "bounced", "bounce"),
    ("sendgrid", rec.SENDGRID_DROPPED_BOUNCED, "bounced", "bounce"),
    ("sendgrid", rec.SENDGRID_DROPPED_UNSUBSCRIBED, "unsubscribed", "unsubscribed"),
    ("sendgrid", rec.sendgrid_dropped("Spam Reporting Address"), "complained", "complaint"),
    ("sendgrid", rec.sendgrid_dropped("Invalid SMTPAPI header"), "other", None),
    ("sendgrid", rec.sendgrid_dropped("Recipient List over Package Quota"), "other", None),
    ("postmark", rec.POSTMARK_HARD_BOUNCE, "bounced", "bounce"),
    ("postmark", rec.POSTMARK_SPAM_COMPLAINT, "complained", "complaint"),
    ("postmark", rec.POSTMARK_BOUNCE_UNSUBSCRIBE, "unsubscribed", "unsubscribed"),
    ("postmark", rec.postmark_subscription_change(True, "HardBounce"), "bounced", "bounce"),
    ("postmark", rec.postmark_subscription_change(True, "SpamComplaint"), "complained", "complaint"),
    ("postmark", rec.postmark_subscription_change(True, "ManualSuppression"), "unsubscribed", "unsubscribed"),
    ("postmark", rec.postmark_subscription_change(False, None), "other", None),
    ("ses", rec.SES_BOUNCE, "bounced", "bounce"),
    ("ses", rec.SES_COMPLAINT, "complained", "complaint"),
    ("ses", rec.SES_DELIVERY, "delivered", None),
    ("resend", rec.RESEND_BOUNCED, "bounced", "bounce"),
    ("resend", rec.RESEND_COMPLAINED, "complained", "complaint"),
]


@pytest.mark.parametrize(
    ("provider", "payload", "kind", "reason"), CASES, ids=[f"{c[0]}-{i}-{c[2]}" for i, c in enumerate(CASES)]
)
def test_a_recorded_event_is_stored_as_its_kind_and_suppresses_for_its_reason(
    hooks, keys, provider, payload, kind, reason
):
    client, settings = hooks
    headers, body = _signed(keys, provider, payload)
    response = client.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    with session_scope(settings.database_url) as session:
        assert [e.kind for e in fx.stored_events(session)] == [kind]
        row = suppression(session, READER)
        assert (row.reason if row else None) == reason
        reader = get_by_email(session, READER)
        assert (reader.status is SubscriberStatus.unsubscribed) == (reason is not None)
        assert reader.soft_bounces == (kind == "soft_bounced")
        for other in ("reader0@example.com", "reader2@example.com"):  # the other addresses SES events name
            assert suppression(session, other) is None


def test_unknown_drop_reasons_suppress_nobody_and_are_logged(hooks, keys, caplog):
    client, settings = hooks
    caplog.set_level(logging.WARNING, logger="pipeline.delivery.providers.sendgrid")
    for reason in ("Invalid recipient domain", "Bounced Address (old)", "invalid"):  # near the documented, not them
        headers, body = _signed(keys, "sendgrid", rec.sendgrid_dropped(reason))
        assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 200
        assert reason in caplog.text
    with session_scope(settings.database_url) as session:
        assert suppression(session, READER) is None
        assert {e.kind for e in fx.stored_events(session)} == {"other"}


def test_mailgun_giving_up_after_temporary_failures_suppresses_only_at_the_soft_bounce_limit(hooks, keys):
    client, settings = hooks
    for attempt in range(1, 4):  # VERDICTS_SOFT_BOUNCE_LIMIT=3
        gave_up = {**rec.MAILGUN_GAVE_UP_OVER_QUOTA, "id": f"gave-up-{attempt}"}
        assert client.post("/webhooks/mailgun", content=_signed(keys, "mailgun", gave_up)[1]).status_code == 200
        with session_scope(settings.database_url) as session:
            assert (suppression(session, READER) is not None) == (attempt == 3)


def test_a_mailgun_retry_is_stored_once_whether_or_not_it_is_signed_again(hooks, keys):
    """The event is stored under Mailgun's event id: a retry with the first signature block (as Mailgun
    sends them) or with a new one (a second webhook URL, a re-signed retry) counts once."""
    client, settings = hooks
    soft = rec.addressed(rec.MAILGUN_GAVE_UP_OVER_QUOTA, READER)
    first = fx.mailgun_signed(keys, soft)
    for headers, body in (first, first, fx.mailgun_signed(keys, soft)):
        assert client.post("/webhooks/mailgun", content=body, headers=headers).status_code == 200
    with session_scope(settings.database_url) as session:
        assert len(fx.stored_events(session)) == 1 and get_by_email(session, READER).soft_bounces == 1


def test_a_spent_mailgun_signature_cannot_carry_another_event(hooks, keys):
    """Mailgun signs the token, not the event: one seen request must not let anyone post forged events."""
    client, settings = hooks
    headers, body = fx.mailgun_signed(keys, rec.addressed(rec.MAILGUN_FAILED_TEMPORARY, READER))
    assert client.post("/webhooks/mailgun", content=body, headers=headers).json()["stored"] == 1
    before = db_snapshot(settings.database_url)
    forged = json.loads(body)
    forged["event-data"] = rec.addressed(rec.MAILGUN_COMPLAINED, "reader2@example.com")
    response = client.post("/webhooks/mailgun", content=json.dumps(forged), headers=headers)
    assert response.status_code == 200 and response.json()["stored"] == 0
    assert db_snapshot(settings.database_url) == before


def test_the_sns_topic_validation_notice_is_acknowledged_and_stores_nothing(hooks, keys):
    """SNS sends it once, as text; a 400 made SNS retry it, and logged an unreadable payload each time."""
    client, settings = hooks
    before = db_snapshot(settings.database_url)
    headers, body = _signed(keys, "ses", rec.SES_TOPIC_VALIDATED)
    response = client.post("/webhooks/ses", content=body, headers=headers)
    assert response.status_code == 200 and response.json() == {"received": 0, "stored": 0}
    assert db_snapshot(settings.database_url) == before
