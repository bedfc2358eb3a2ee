"""Hostile input, generated (hypothesis): arbitrary bytes and text where files, tokens,
webhooks and editors' words come in. Each gives a clear error or a valid result, never a
crash, and a refused write changes nothing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from pipeline.content import load_files
from pipeline.errors import InvalidInput, VerdictsError
from pipeline.web.app import create_app
from subscribers.csvio import check_rows
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, BadToken, read_timed_token, read_token, read_vote_token
from tests.conftest import db_snapshot, seed_issue

FAST = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25,
)


def _file(suffix: str, data: bytes) -> Path:
    path = Path(tempfile.mkdtemp()) / f"input{suffix}"
    path.write_bytes(data)
    return path


@FAST
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".json", ".yaml", ".yml"]))
def test_comparison_files_of_arbitrary_bytes_are_refused_with_the_file_named(data, suffix):
    path = _file(suffix, data)
    try:
        load_files([path])
    except InvalidInput as exc:
        assert str(path) in str(exc)


@FAST
@given(doc=json_values)
def test_comparison_files_of_arbitrary_json_are_refused_or_valid(doc):
    path = _file(".json", json.dumps(doc).encode())
    try:
        load_files([path])
    except InvalidInput as exc:
        assert str(path) in str(exc)


@FAST
@given(data=st.binary(max_size=2000))
def test_csv_of_arbitrary_bytes_is_refused_or_checked_row_by_row(data):
    path = _file(".csv", data)
    try:
        report, _rows = check_rows(path)
    except InvalidInput as exc:
        assert str(path) in str(exc)
    else:
        assert all(r.line >= 2 for r in report.rows)


@FAST
@given(token=st.text(max_size=120))
def test_tokens_of_any_text_are_refused_cleanly(token):
    for read in (lambda t: read_token("s", UNSUBSCRIBE, t), lambda t: read_vote_token("s", t),
                 lambda t: read_timed_token("s", CONFIRM, t, 3600)):
        try:
            read(token)
        except BadToken:
            pass


@pytest.fixture
def hook_app(workdir, settings, monkeypatch):
    for name, value in {"VERDICTS_POSTMARK_WEBHOOK_AUTH": "u:p", "VERDICTS_MAILGUN_WEBHOOK_SIGNING_KEY": "k",
                        "VERDICTS_RESEND_WEBHOOK_SECRET": "whsec_c2VjcmV0", "VERDICTS_SENDGRID_WEBHOOK_PUBLIC_KEY": "AAAA",
                        "VERDICTS_SES_SNS_TOPIC_ARNS": "arn:aws:sns:eu-west-1:1:t"}.items():
        monkeypatch.setenv(name, value)
    from pipeline.config import get_settings

    get_settings.cache_clear()
    with TestClient(create_app(get_settings()), base_url="https://testserver") as client:
        yield client, get_settings()


@FAST
@given(provider=st.sampled_from(["postmark", "sendgrid", "mailgun", "resend", "ses"]), body=st.binary(max_size=1500),
       headers=st.dictionaries(st.sampled_from(["authorization", "svix-id", "svix-timestamp", "svix-signature",
                                                "x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp"]),
                               st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60), max_size=4))
def test_webhooks_of_arbitrary_bytes_are_refused_and_change_nothing(hook_app, provider, body, headers):
    client, settings = hook_app
    before = db_snapshot(settings.database_url)
    response = client.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert response.status_code in (400, 401)
    assert db_snapshot(settings.database_url) == before


@pytest.fixture
def draft(workdir, session):
    return seed_issue(session, workdir, readers=0, approved=False)


@FAST
@given(subject=st.text(max_size=80))
def test_a_stored_subject_is_always_one_clean_line(session, draft, subject):
    """Header injection: whatever an editor pastes, the subject that reaches a header has no
    line break or control character: it is refused, or only outer whitespace was trimmed."""
    from pipeline.editing import edit

    try:
        edit(session, draft, subject=subject)
        session.commit()
    except VerdictsError:
        session.rollback()
        return
    stored = draft.subject
    assert stored == subject.strip() and stored and not any(ord(c) < 32 for c in stored)
