"""No webhook body, verified or not, answers 500: hostile bodies (deep nesting, non-UTF-8, huge numbers,
NaN) get a 4xx and change nothing, and a verified payload with any value of the wrong type anywhere is
either read or refused with 400, through the real app and database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pipeline.config import get_settings
from pipeline.delivery.providers import WEBHOOK_PROVIDERS
from pipeline.delivery.providers.base import ProviderEvent
from pipeline.web.webhooks import UNREADABLE
from tests.conftest import db_snapshot
from tests.pipeline.delivery.providers import recorded_payloads as rec
from tests.pipeline.delivery.providers import webhook_fixtures as fx

PROVIDERS = list(fx.BUILDERS)
DEEP = 100_000
HOSTILE_BODIES = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"\xff\xfe\x00{",
    b"1" + b"0" * 5000,
    b"NaN",
    b"[1e999]",
    b'{"x": Infinity}',
    b"",
    b"null",
    b'"text"',
]
#: What a value of the wrong type can be, at any place in a payload.
WRONG = [None, True, -1, 0, 2**64, 1.5, "", "x", "\x00", "\ud800", "²", "9" * 30, [], {}, [[]], {"a": {}}]
#: One verified payload per provider, the same shape as what it really sends.
VALID = {
    "mailgun": rec.MAILGUN_FAILED_PERMANENT,
    "sendgrid": rec.SENDGRID_BOUNCE,
    "postmark": rec.POSTMARK_HARD_BOUNCE,
    "resend": rec.RESEND_BOUNCED,
    "ses": rec.SES_BOUNCE,
}


def _sign(keys: fx.Keys, provider: str, payload: Any, raw: bytes | None = None) -> tuple[dict, bytes]:
    """``payload`` where the provider's signature covers it (or ``raw`` bytes as they are)."""
    body = raw if raw is not None else json.dumps(payload).encode()
    if provider == "mailgun":
        return fx.mailgun_signed(keys, payload) if raw is None else ({}, raw)
    if provider == "sendgrid":
        return fx.sendgrid_signed(keys, body)
    if provider == "postmark":
        return fx.postmark_signed(keys, None)[0], body
    if provider == "resend":
        return fx.resend_signed(keys, body)
    try:  # SNS signs the Message, a string inside its JSON envelope: bytes that are no text go as the body
        return fx.ses_signed(keys, body.decode())
    except UnicodeDecodeError:
        return {}, body


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        yield from _paths(child, (*path, key))


def _replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hostile_bodies_get_a_4xx_and_change_nothing(hooks, keys, provider):
    client, settings = hooks
    before = db_snapshot(settings.database_url)
    for raw in HOSTILE_BODIES:
        headers, body = _sign(keys, provider, None, raw)
        response = client.post(f"/webhooks/{provider}", content=body, headers=headers)
        assert 400 <= response.status_code < 500, (raw[:20], response.status_code, response.text)
    if provider == "mailgun":  # a verified signature block beside hostile event data
        for raw in filter(None, HOSTILE_BODIES):
            _, signed = fx.mailgun_signed(keys, "EVENT")
            body = signed.replace(b'"EVENT"', raw)
            assert 400 <= client.post("/webhooks/mailgun", content=body).status_code < 500
    assert db_snapshot(settings.database_url) == before


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_value_of_the_wrong_type_anywhere_is_read_or_refused_never_a_crash(hooks, keys, provider):
    """Every place in a real payload, every wrong type: the app answers 200 or 400 (the test client
    re-raises any exception the app did not handle, so a crash fails here, not as a bare 500)."""
    client, _ = hooks
    payload = rec.addressed(VALID[provider], "reader1@example.com")
    for path in _paths(payload):
        for wrong in WRONG:
            mutated = _replaced(payload, path, wrong)
            if provider == "sendgrid":
                mutated = [mutated]
            headers, body = _sign(keys, provider, mutated)
            status = client.post(f"/webhooks/{provider}", content=body, headers=headers).status_code
            assert status in (200, 400), (path, wrong, status)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "event",
                    "type",
                    "RecordType",
                    "data",
                    "bounce",
                    "to",
                    "id",
                    "reason",
                    "severity",
                    "delivery-status",
                    "code",
                    "email",
                    "tags",
                    "mail",
                    "eventType",
                    "Type",
                    "ID",
                    "Metadata",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("provider", PROVIDERS)
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON)
def test_any_verified_json_reads_as_storable_events_or_a_clear_refusal(keys, monkeypatch, provider, payload):
    for name, value in keys.env.items():
        monkeypatch.setenv(name, value)
    cert = keys.sns_certificate()
    monkeypatch.setattr("pipeline.delivery.providers.ses.fetch_certificate", lambda url: cert)
    get_settings.cache_clear()
    headers, body = _sign(keys, provider, payload)
    try:
        lowered = {k.lower(): v for k, v in headers.items()}
        reply = WEBHOOK_PROVIDERS[provider].read_webhook(get_settings(), lowered, body)
    except UNREADABLE:
        return
    assert all(isinstance(e, ProviderEvent) for e in reply.events)
