"""Every header we hand any provider is printable ASCII (SES refuses anything else, and pauses the send) or
RFC 2047-encoded, and reads back to what the settings and the reader's row say: for any FROM_NAME, LIST_ID,
reader name and subject, in each provider's real request (and the outbox's .eml file)."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header

import pytest
from hypothesis import HealthCheck, assume, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.delivery.messages import build_message
from pipeline.delivery.providers import PROVIDERS
from pipeline.delivery.providers.base import OutgoingMessage
from pipeline.delivery.providers.mime import build_mime
from pipeline.email.lint import Lint
from pipeline.email.personal import Body
from pipeline.email.render import Recipient, RenderedIssue
from pipeline.errors import InvalidInput
from subscribers.addresses import clean_name
from tests.fakes.provider_api import TEST_ENV

FROM = "news@verdicts.example.org"
READER = "reader@example.org"
API_PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses")

# Anything a person could type: every script, emoji, punctuation, odd spaces (no control characters: refused).
typed = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=80)
list_ids = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9-]{1,20}){1,3}", fullmatch=True)


@pytest.fixture(autouse=True, scope="module")
def aws_credentials() -> Iterator[None]:
    """SES signs with the standard credential chain: test keys, and no profile of the machine's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        patch.delenv("AWS_PROFILE", raising=False)
        for name, value in TEST_ENV["ses"].items():
            patch.setenv(name, value)
        yield


def site(**values: str | None) -> Settings:
    env = {
        k.removeprefix("VERDICTS_").lower(): v
        for p in API_PROVIDERS
        for k, v in TEST_ENV[p].items()
        if k.startswith("VERDICTS_")
    }
    return Settings(_env_file=None, from_email=FROM, **env, **values)  # type: ignore[arg-type]


def message(config: Settings, reader_name: str, subject: str) -> OutgoingMessage:
    rendered = RenderedIssue(7, "2026-W48", "", Body.fixed(subject, "<p>Hello</p>", "Hello"), Lint(html_bytes=14))
    return build_message(rendered, Recipient(42, READER, reader_name), config, delivery_id=4242, campaign="7-2026-W48")


def header_strings(provider: str, config: Settings, sent: OutgoingMessage) -> dict[str, str]:
    """The header strings of the provider's real request, by header name (From where the API takes a header string)."""
    if provider == "outbox":
        raw = build_mime(
            sent,
            from_email=config.from_email,
            from_name=config.from_name,
            date=datetime(2026, 11, 23, 9, tzinfo=UTC),
        ).as_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0]
        head.decode("ascii")  # every byte of the header section, folded or not
        parsed = email.message_from_bytes(raw, policy=policy.compat32)
        # Folded lines are one header (RFC 5322 unfolding): each part must be printable ASCII, and is.
        return {name: re.sub(r"\r\n(?=[ \t])", "", value) for name, value in parsed.items()}
    api = PROVIDERS[provider](config)
    try:
        request = api.build_request([sent], "7-2026-W48")
    finally:
        api.close()
    if provider == "mailgun":
        return {
            name.removeprefix("h:"): value for name, value in request.form if name.startswith("h:") or name == "from"
        }
    if provider == "sendgrid":  # `from` and `to` are JSON objects: SendGrid writes those headers itself
        return dict(request.json["personalizations"][0]["headers"])
    if provider == "ses":
        simple = request.json["Content"]["Simple"]
        return {"From": request.json["FromEmailAddress"], **{h["Name"]: h["Value"] for h in simple["Headers"]}}
    [item] = request.json
    listed = item.get("Headers") or [{"Name": k, "Value": v} for k, v in item["headers"].items()]
    return {"From": item.get("From") or item["from"], **{h["Name"]: h["Value"] for h in listed}}


def read_back(name: str, value: str) -> str | tuple[str, str]:
    """The header as a mail program reads it: printable ASCII, RFC 2047 words decoded (stdlib ``email``); an
    address header as (display name, address). Adjacent encoded words join without the space between them
    (RFC 2047 section 6.2), which the stdlib's newer address parser keeps."""
    assert value.isascii() and value.isprintable(), f"{name}: {value!r} is not printable ASCII"
    if name.lower() in ("from", "to", "list-id"):
        [(display, address)] = email.utils.getaddresses([value])
        return str(make_header(decode_header(display))), address
    return str(policy.default.header_factory(name, value))


@pytest.mark.parametrize("provider", ["outbox", *API_PROVIDERS])
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_name=typed, list_id=list_ids, reader=typed, subject=typed.map(str.strip).filter(bool))
# Specials beside non-ASCII (a refolded List-Id once left a bare ")"), a name longer than one encoded word.
@example(from_name=") Verdicts ¡", list_id="weekly.example.org", reader="Zoë " * 30, subject="Über, (naïve) — 48")
def test_every_header_is_ascii_and_reads_back_as_written(provider, from_name, list_id, reader, subject):
    try:
        config = site(from_name=from_name, list_id=list_id)
        reader_name = clean_name(reader)
    except (ValidationError, InvalidInput):
        assume(False)  # refused at load or sign-up, with its own tests
    sent = message(config, reader_name, subject)
    headers = header_strings(provider, config, sent)

    assert read_back("List-Id", headers["List-Id"]) == (config.from_name, list_id)
    assert read_back("List-Unsubscribe", headers["List-Unsubscribe"]) == f"<{sent.values['unsubscribe_url']}>"
    assert read_back("List-Unsubscribe-Post", headers["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert read_back("X-Verdicts-Delivery", headers["X-Verdicts-Delivery"]) == "4242"
    if "From" in headers:
        assert read_back("From", headers["From"]) == (config.from_name, FROM)
    if provider == "outbox":
        assert read_back("To", headers["To"]) == (reader_name, READER)
        assert read_back("Subject", headers["Subject"]) == subject


@pytest.mark.parametrize(
    ("from_name", "list_id", "shown"),
    [
        (
            "Les Verdicts — édition française",
            "hebdo.verdicts.example.org",
            "=?utf-8?b?TGVzIFZlcmRpY3RzIOKAlCDDqWRpdGlvbiBmcmFuw6dhaXNl?= <hebdo.verdicts.example.org>",
        ),
        ("Verdicts, Inc.", "weekly.verdicts.example.org", '"Verdicts, Inc." <weekly.verdicts.example.org>'),
    ],
)
def test_list_id_quotes_or_encodes_the_sender_name(from_name, list_id, shown):
    """The two names that broke List-Id: an é or a dash (SES refused every message), a comma (RFC 2919)."""
    config = site(from_name=from_name, list_id=list_id)
    headers = header_strings("ses", config, message(config, "Ana", "Week 48"))
    assert headers["List-Id"] == shown


def test_the_mailto_is_offered_only_when_a_mailbox_is_set_to_receive_it():
    """A mailto nobody reads leaves a reader who used it subscribed: unset by default, the one-click link alone."""
    by_default = message(site(), "Ana", "Week 48")
    assert by_default.headers["List-Unsubscribe"] == f"<{by_default.values['unsubscribe_url']}>"

    chosen = message(site(unsubscribe_mailto="leave+news@verdicts.example.org"), "Ana", "Week 48")
    token = chosen.values["unsubscribe_url"].rsplit("/", 1)[1]
    assert chosen.headers["List-Unsubscribe"] == (
        f"<{chosen.values['unsubscribe_url']}>, <mailto:leave+news@verdicts.example.org?subject=unsubscribe-{token}>"
    )
