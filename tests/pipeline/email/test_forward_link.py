"""Every issue email carries a "Forward this verdict" link: the public web version with the reader's own
referral code, and nothing that acts for them."""

from __future__ import annotations

import email
import re
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr
from urllib.parse import parse_qs, urlsplit

from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue, send_test_copies
from pipeline.email.render import web_url
from subscribers.models import Subscriber
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, BadToken, read_referral, read_token
from tests.conftest import outbox_messages, seed_issue

#: The anchor in the HTML part, and the line after the prompt in the text part.
HTML_LINK = re.compile(r'<a href="([^"]+)"[^>]*>Forward this verdict')
TEXT_LINK = re.compile(r"Forward this verdict:\r?\n(\S+)")


def _parts(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(preferencelist=("html",)).get_content()
    return html, message.get_body(preferencelist=("plain",)).get_content()


def forward_links(message: EmailMessage) -> tuple[str, str]:
    """The forward link of the HTML part and of the text part (each exactly once)."""
    html, text = _parts(message)
    [in_html], [in_text] = HTML_LINK.findall(html), TEXT_LINK.findall(text)
    return in_html, in_text


def test_each_reader_forwards_the_public_web_version_with_their_own_referral_code(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=3)
    send_issue(settings, issue.id, OutboxProvider(settings))
    ids = {s.email: s.id for s in session.exec(select(Subscriber))}
    secret = settings.secret_key.get_secret_value()
    messages = outbox_messages(settings, f"{issue.id}-{issue.week}")
    assert len(messages) == 3
    codes = set()
    for message in messages:
        in_html, in_text = forward_links(message)
        assert in_html == in_text  # a signed code never needs escaping in markup
        url = urlsplit(in_text)
        assert f"{url.scheme}://{url.netloc}{url.path}" == web_url(settings, issue.week)
        [code] = parse_qs(url.query, strict_parsing=True)["ref"]
        assert set(parse_qs(url.query)) == {"ref"} and not url.fragment
        reader = parseaddr(message["To"])[1]
        assert read_referral(secret, code) == ids[reader]
        codes.add(code)
        # Not a private link: the code acts for nobody, and no private token of the reader is in it.
        html, text = _parts(message)
        private = set(re.findall(r"/(?:unsubscribe|preferences|vote)/([\w.-]+)", text))
        assert private and not any(token in in_text for token in private)
        for purpose in (UNSUBSCRIBE, PREFERENCES):
            try:
                read_token(secret, purpose, code)
            except BadToken:
                continue
            raise AssertionError(f"a referral code was accepted as a {purpose} token")
        assert "Know someone choosing between these tools?" in html and "Know someone choosing" in text
    assert len(codes) == 3  # each reader's own


def test_a_test_copy_forwards_the_web_version_without_a_code(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=0)
    results = send_test_copies(session, issue, settings, ["editor@example.com"])
    assert all(outcome.ok for _, outcome in results)
    [path] = settings.outbox_dir.rglob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=default)
    assert forward_links(message) == (web_url(settings, issue.week), web_url(settings, issue.week))
