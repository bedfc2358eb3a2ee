"""Hostile input, generated (hypothesis): arbitrary bytes and text where files, tokens,
webhooks and editors' words come in. Each gives a clear error or a valid result, never a
crash, and a refused write changes nothing."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.content.importing import load_files
from pipeline.errors import InvalidInput, VerdictsError
from pipeline.web.app import create_app
from subscribers.csvio import ImportReport, checked_rows
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, BadToken, read_timed_token, read_token, read_vote_token
from tests.conftest import NOW, db_snapshot, seed_issue

FAST = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
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
        report = ImportReport()
        list(checked_rows(path, report))
    except InvalidInput as exc:
        assert str(path) in str(exc)
    else:
        assert all(r.line >= 2 for r in report.rows)


@FAST
@given(token=st.text(max_size=120))
def test_tokens_of_any_text_are_refused_cleanly(token):
    for read in (
        lambda t: read_token("s", UNSUBSCRIBE, t),
        lambda t: read_vote_token("s", t, "1"),
        lambda t: read_timed_token("s", CONFIRM, t, 3600),
    ):
        with contextlib.suppress(BadToken):
            read(token)


@pytest.fixture
def hook_app(workdir, settings, monkeypatch):
    for name, value in {
        "VERDICTS_POSTMARK_WEBHOOK_AUTH": "u:p",
        "VERDICTS_MAILGUN_WEBHOOK_SIGNING_KEY": "k",
        "VERDICTS_RESEND_WEBHOOK_SECRET": "whsec_c2VjcmV0",
        "VERDICTS_SENDGRID_WEBHOOK_PUBLIC_KEY": "AAAA",
        "VERDICTS_SES_SNS_TOPIC_ARNS": "arn:aws:sns:eu-west-1:1:t",
    }.items():
        monkeypatch.setenv(name, value)
    from pipeline.config import get_settings

    get_settings.cache_clear()
    with TestClient(create_app(get_settings()), base_url="https://testserver") as client:
        yield client, get_settings()


@FAST
@given(
    provider=st.sampled_from(["postmark", "sendgrid", "mailgun", "resend", "ses"]),
    body=st.binary(max_size=1500),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "authorization",
                "svix-id",
                "svix-timestamp",
                "svix-signature",
                "x-twilio-email-event-webhook-signature",
                "x-twilio-email-event-webhook-timestamp",
            ]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        max_size=4,
    ),
)
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
    from pipeline.content.editing import edit

    try:
        edit(session, draft, subject=subject)
        session.commit()
    except VerdictsError:
        session.rollback()
        return
    stored = draft.subject
    assert stored == subject.strip() and stored and not any(ord(c) < 32 for c in stored)


#: Breaks out of an attribute, opens a script and an event handler, and carries a bare ampersand.
MARKUP = """"'><script>alert(1)</script><img/src=x/onerror=alert(2)>R&D"""
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img/src=x/onerror=alert(2)&gt;R&amp;D"
CONTENT_FIELDS = {
    "comparison title": lambda c: c.update(title=MARKUP),
    "question": lambda c: c.update(question=MARKUP),
    "tool name": lambda c: c["tools"][0].update(name=MARKUP),
    "category": lambda c: c["tools"][0].update(category=MARKUP),
    "tagline": lambda c: c["tools"][0].update(tagline=MARKUP),
    "description": lambda c: c["tools"][0].update(description=MARKUP),
    "entry price": lambda c: c["tools"][0].update(entry_price=MARKUP),
    "reviewer": lambda c: c["reviews"][0].update(reviewer=MARKUP),
    "lens": lambda c: c["reviews"][0].update(lens=MARKUP),
    "reviewer quote": lambda c: c["reviews"][0].update(quote=MARKUP),
}
EDITOR_FIELDS = ("intro", "subject", "preheader")


def _inert(html: str, where: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered and "<img/src=x" not in lowered, where
    assert ESCAPED in html.replace("&#34;", '"').replace("&quot;", '"').replace("&#39;", "'").replace("&#x27;", "'"), (
        where
    )


@pytest.mark.parametrize("field", [*CONTENT_FIELDS, *EDITOR_FIELDS])
def test_markup_in_any_content_field_stays_text_in_the_email_and_on_the_web(field, workdir, session, settings, client):
    """Whatever a comparison file or an editor puts in a field, the email's HTML, the archive pages
    and the feed show it as text, and the text part carries it as written (no entities, no markup)."""
    import email
    from email.policy import default

    from pipeline.content.editing import edit
    from pipeline.delivery.providers import OutboxProvider
    from pipeline.delivery.send import send_issue
    from pipeline.email.approval import approve
    from tests.conftest import comparison, days_ago

    item = comparison("hostile", days_ago(1))
    CONTENT_FIELDS.get(field, lambda c: None)(item)
    issue = seed_issue(session, workdir, readers=1, approved=False, items=[item])
    if field in EDITOR_FIELDS:
        edit(session, issue, **{field: MARKUP})
    approve(session, issue, settings)
    session.commit()
    send_issue(settings, issue.id, OutboxProvider(settings))

    [path] = workdir.glob("outbox/*/*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=default)
    _inert(message.get_body(preferencelist=("html",)).get_content(), "email html")
    text = message.get_body(preferencelist=("plain",)).get_content()
    if field != "subject":  # the subject is the Subject header, not part of the text
        assert MARKUP in text and "&lt;" not in text and "&amp;" not in text, text
    else:
        assert message["Subject"] == MARKUP
    _inert(client.get(f"/issues/{issue.week}").text, "web version")
    if field in ("subject", "comparison title"):  # what the index and the feed show of an issue
        _inert(client.get("/issues").text, "archive index")
        feed = client.get("/issues/feed.xml").text
        assert "<script" not in feed and "&lt;script&gt;" in feed


@FAST
@given(name=st.text(max_size=60))
def test_a_reader_name_can_never_add_a_header(session, draft, settings, name):
    """Header injection: a name with CR/LF ("Ada\\r\\nBcc: x") is refused or cleaned before it
    reaches the To header; the message parsed back has the same headers as with a plain name."""
    import email
    from email.policy import default

    from pipeline.delivery.messages import build_message
    from pipeline.delivery.providers.mime import build_mime
    from pipeline.email.render import Recipient, render_issue
    from subscribers.addresses import clean_name

    try:
        cleaned = clean_name(name)
    except InvalidInput:
        return
    rendered = render_issue(session, draft, settings)

    def parsed(display: str) -> email.message.EmailMessage:
        message = build_message(
            rendered, Recipient(1, "reader@example.com", display), settings, delivery_id=1, campaign="c"
        )
        mime = build_mime(message, from_email=settings.from_email, from_name=settings.from_name, date=NOW)
        return email.message_from_bytes(mime.as_bytes(), policy=default)

    got, plain = parsed(cleaned), parsed("Ada")
    assert sorted(got.keys()) == sorted(plain.keys()) and got["Subject"] == plain["Subject"]
    assert got["To"].addresses[0].addr_spec == "reader@example.com" and got["To"].addresses[0].display_name == cleaned


def test_console_markup_in_names_titles_and_subjects_is_printed_as_text(workdir, session, verdicts):
    """A "[/]" in a reader's name crashed `subscribers list`; valid markup put a clickable link into the operator's
    terminal. Every command that prints data prints it as it is."""
    from pipeline.content.editing import edit
    from subscribers.service import add_subscriber

    issue = seed_issue(session, workdir, readers=0, approved=False)
    name, subject = "Ann [/] [link=https://evil.test]click[/link]", "Verdicts [/] [bold]now[/bold]"
    add_subscriber(session, "ann@example.org", name, confirmed=True)
    edit(session, issue, subject=subject)
    session.commit()
    for args, shown in (
        (["subscribers", "list"], None),
        (["subscribers", "show", "ann@example.org"], name),
        (["issue", "list"], None),
        (["issue", "show", str(issue.id)], subject),
        (["comparisons", "list"], None),
    ):
        result = verdicts(*args)
        assert result.code == 0, (args, result.err)
        assert shown is None or shown in result.out, (args, result.out)
    assert "[/]" in verdicts("subscribers", "list").out and "[/]" in verdicts("issue", "list").out
