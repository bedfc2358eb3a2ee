"""POST /webhooks/<provider>: each provider's documented payload, signed with keys made
here; verified ones act on the ledger and the suppression list, tampered ones change nothing."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from pipeline.delivery.providers import WEBHOOK_PROVIDERS
from pipeline.delivery.providers.base import WebhookRejected
from pipeline.delivery.providers.webhooks import require_fresh
from pipeline.store.db import session_scope
from pipeline.store.models import Delivery, DeliveryStatus
from pipeline.web.app import create_app
from subscribers.consent import is_suppressed, suppression
from subscribers.lookup import get_by_email
from subscribers.models import SubscriberStatus
from tests.conftest import db_snapshot
from tests.pipeline.delivery.providers import webhook_fixtures as fx

PROVIDERS = list(fx.BUILDERS)


def _delivery(settings, email: str) -> Delivery:
    with session_scope(settings.database_url) as session:
        return session.exec(select(Delivery).where(Delivery.email == email)).one()


def _post(client, provider: str, request: tuple[dict, bytes]):
    headers, body = request
    return client.post(f"/webhooks/{provider}", content=body, headers=headers)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hard_bounce_suppresses_the_reader_and_is_tied_to_its_delivery(hooks, keys, provider):
    client, settings = hooks
    delivery = _delivery(settings, "reader1@example.com")
    response = _post(
        client, provider, fx.BUILDERS[provider](keys, fx.Event("bounced", "reader1@example.com", delivery.id))
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "stored": 1}
    with session_scope(settings.database_url) as session:
        reader = get_by_email(session, "reader1@example.com")
        assert reader.status is SubscriberStatus.unsubscribed and is_suppressed(session, "reader1@example.com")
        [event] = fx.stored_events(session)
        assert (event.provider, event.kind, event.delivery_id) == (provider, "bounced", delivery.id)
        assert get_by_email(session, "reader2@example.com").status is SubscriberStatus.confirmed


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tampered_or_unsigned_requests_get_401_and_change_nothing(hooks, keys, provider):
    client, settings = hooks
    before = db_snapshot(settings.database_url)
    headers, body = fx.BUILDERS[provider](keys, fx.Event("complained", "reader1@example.com"))
    tampered = body.replace(b"reader1@example.com", b"reader2@example.com")
    if provider == "postmark":  # Postmark signs nothing: its proof is the URL's basic auth
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(b"hooks:guess").decode()}
    if provider == "mailgun":  # Mailgun signs timestamp + token (each token is accepted once), not the body
        doc = json.loads(body)
        doc["signature"]["token"] = doc["signature"]["token"][::-1]
        tampered = json.dumps(doc).encode()
    assert client.post(f"/webhooks/{provider}", content=tampered, headers=headers).status_code == 401
    signature_headers = {"authorization", "x-twilio-email-event-webhook-signature", "svix-signature"}
    stripped = {k: v for k, v in headers.items() if k.lower() not in signature_headers}
    if provider == "mailgun":
        doc = json.loads(body)
        doc["signature"]["signature"] = "0" * 64
        body = json.dumps(doc).encode()
    if provider == "ses":
        doc = json.loads(body)
        doc["SigningCertURL"] = "https://attacker.example.com/cert.pem"
        body = json.dumps(doc).encode()
    assert client.post(f"/webhooks/{provider}", content=body, headers=stripped).status_code == 401
    assert db_snapshot(settings.database_url) == before


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "resend"])
def test_signed_requests_older_than_the_providers_retries_are_refused(hooks, keys, provider):
    client, settings = hooks
    before = db_snapshot(settings.database_url)
    too_old = WEBHOOK_PROVIDERS[provider].webhook_retry_seconds + settings.webhook_max_age_seconds + 60
    for age in (too_old, -settings.webhook_max_age_seconds - 60):  # and from the future, beyond clock skew
        request = fx.BUILDERS[provider](keys, fx.Event("complained", "reader1@example.com"), age=age)
        response = _post(client, provider, request)
        assert response.status_code == 401
    assert db_snapshot(settings.database_url) == before


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun"])
def test_a_retry_carrying_its_first_timestamp_is_accepted_after_an_outage(hooks, keys, provider):
    """Mailgun and SendGrid retry for hours with the first signature: a site down for more than the old
    300 s window lost every bounce and complaint of the outage, for good."""
    client, settings = hooks
    late = WEBHOOK_PROVIDERS[provider].webhook_retry_seconds - 600
    assert late > 3600
    request = fx.BUILDERS[provider](keys, fx.Event("complained", "reader1@example.com"), age=late)
    response = _post(client, provider, request)
    assert response.status_code == 200, response.text
    with session_scope(settings.database_url) as session:
        assert suppression(session, "reader1@example.com").reason == "complaint"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_retried_event_is_stored_once(hooks, keys, provider):
    client, settings = hooks
    request = fx.BUILDERS[provider](
        keys, fx.Event("delivered", "reader0@example.com", _delivery(settings, "reader0@example.com").id)
    )
    assert _post(client, provider, request).json()["stored"] == 1
    assert _post(client, provider, request).json() == {"received": 1, "stored": 0}
    with session_scope(settings.database_url) as session:
        assert len(fx.stored_events(session)) == 1


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if "soft_bounced" in fx.SUPPORTED[p]])
def test_soft_bounces_suppress_only_after_the_limit_in_a_row(hooks, keys, provider):
    client, settings = hooks
    build, who = fx.BUILDERS[provider], "reader3@example.com"
    for kind in ("soft_bounced", "soft_bounced", "delivered", "soft_bounced", "soft_bounced"):
        assert _post(client, provider, build(keys, fx.Event(kind, who))).status_code == 200
    with session_scope(settings.database_url) as session:
        assert get_by_email(session, who).status is SubscriberStatus.confirmed  # the delivery broke the run
    _post(client, provider, build(keys, fx.Event("soft_bounced", who)))
    with session_scope(settings.database_url) as session:
        assert get_by_email(session, who).status is SubscriberStatus.unsubscribed and is_suppressed(session, who)


def test_mailgun_deferrals_and_postmark_auto_replies_never_suppress(hooks, keys):
    client, settings = hooks
    for _ in range(5):  # Mailgun retries a greylisted message by itself: each retry is a temporary "failed"
        assert (
            _post(client, "mailgun", fx.mailgun(keys, fx.Event("soft_bounced", "reader3@example.com"))).status_code
            == 200
        )
    headers, body = fx.postmark(keys, fx.Event("soft_bounced", "reader2@example.com"))
    for _ in range(5):
        auto_reply = json.loads(body) | {"Type": "AutoResponder", "ID": secrets.randbelow(10**9)}
        assert client.post("/webhooks/postmark", content=json.dumps(auto_reply), headers=headers).status_code == 200
    with session_scope(settings.database_url) as session:
        assert not is_suppressed(session, "reader3@example.com") and not is_suppressed(session, "reader2@example.com")
        assert {e.kind for e in fx.stored_events(session)} == {"other"}


def test_a_verified_postmark_request_that_is_no_event_is_refused_and_stores_nothing(hooks, keys):
    client, settings = hooks
    headers, _ = fx.postmark(keys, fx.Event("soft_bounced", "reader2@example.com"))
    before = db_snapshot(settings.database_url)
    for body in ("{}", "[]", '{"MessageID": "x"}'):
        refused = client.post("/webhooks/postmark", content=body, headers=headers)
        assert refused.status_code == 400 and refused.json() == {"error": "the payload could not be read"}
    assert db_snapshot(settings.database_url) == before


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if "unsubscribed" in fx.SUPPORTED[p]])
def test_provider_unsubscribe_suppresses(hooks, keys, provider):
    client, settings = hooks
    assert (
        _post(
            client, provider, fx.BUILDERS[provider](keys, fx.Event("unsubscribed", "reader2@example.com"))
        ).status_code
        == 200
    )
    with session_scope(settings.database_url) as session:
        assert is_suppressed(session, "reader2@example.com")


def test_an_event_settles_an_unknown_outcome_and_issue_show_counts_events(hooks, keys, verdicts):
    client, settings = hooks
    rows = {e: _delivery(settings, e) for e in ("reader0@example.com", "reader1@example.com", "reader2@example.com")}
    with session_scope(settings.database_url) as session:
        row = session.get(Delivery, rows["reader0@example.com"].id)
        row.status = DeliveryStatus.unknown
        session.add(row)
    _post(
        client,
        "sendgrid",
        fx.sendgrid(keys, fx.Event("delivered", "reader0@example.com", rows["reader0@example.com"].id)),
    )
    _post(
        client,
        "mailgun",
        fx.mailgun(keys, fx.Event("delivered", "reader1@example.com", rows["reader1@example.com"].id)),
    )
    _post(
        client,
        "postmark",
        fx.postmark(keys, fx.Event("complained", "reader2@example.com", rows["reader2@example.com"].id)),
    )
    with session_scope(settings.database_url) as session:
        assert session.get(Delivery, rows["reader0@example.com"].id).status is DeliveryStatus.sent
    result = verdicts("issue", "show", str(rows["reader0@example.com"].issue_id))
    assert result.code == 0, result.err
    assert "delivered 2, bounced 0, complained 1, unsubscribed 0" in result.out


def test_sns_subscription_is_confirmed_after_verification(hooks, keys, monkeypatch):
    client, _ = hooks
    fetched = []
    monkeypatch.setattr("pipeline.web.webhooks.confirm_subscription", fetched.append)
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
    envelope = fx.sns_envelope(
        keys, "SubscriptionConfirmation", "You have chosen to subscribe", SubscribeURL=url, Token="abc"
    )
    assert client.post("/webhooks/ses", content=json.dumps(envelope)).status_code == 200
    assert fetched == [url]
    other_topic = fx.sns_envelope(
        keys, "SubscriptionConfirmation", "x", SubscribeURL=url, Token="abc", TopicArn="arn:aws:sns:eu-west-1:999:other"
    )
    assert client.post("/webhooks/ses", content=json.dumps(other_topic)).status_code == 401
    other_region = fx.sns_envelope(
        keys,
        "SubscriptionConfirmation",
        "x",
        SubscribeURL=url,
        Token="abc",
        SigningCertURL="https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
    )
    assert client.post("/webhooks/ses", content=json.dumps(other_region)).status_code == 401
    assert fetched == [url]


def test_unconfigured_webhooks_are_refused(workdir, settings):
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert client.post("/webhooks/mailgun", content=b"{}").status_code == 401
        assert client.post("/webhooks/outbox", content=b"{}").status_code == 404


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf", "NaN"])
def test_a_timestamp_that_is_not_a_moment_is_never_fresh(stamp):
    """float("nan") parses, and no comparison with nan is true: it passed every freshness check."""
    with pytest.raises(WebhookRejected):
        require_fresh(stamp, 300, 300)
