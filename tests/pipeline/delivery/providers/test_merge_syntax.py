"""Content can never reach a provider's merge tags: each provider's real request, through its fake on loopback,
which fills in the per-reader values and its own documented tags, gives every reader the content as written and
no private link inside a link to somewhere else (a tool URL carrying %recipient.preferences_url% handed the
reader's private link to a third party with Mailgun)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.content import editing
from pipeline.content.importing import load_files, upsert
from pipeline.content.issues import get_issue
from pipeline.delivery.send import send_test_copies
from pipeline.email.render import reader_url
from pipeline.store.db import session_scope
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE
from tests.conftest import comparison, days_ago, seed_issue, write_json

#: Every provider's substitution syntax, and our own slot marker.
TAGS = [
    "%recipient.preferences_url%",
    "%recipient.unsubscribe_url%",
    "%recipient.name%",
    "%unsubscribe_url%",
    "%tag_unsubscribe_url%",
    "<%asm_preferences_raw_url%>",
    "<%asm_group_unsubscribe_raw_url%>",
    "<% %>",
    "{{{ pm:unsubscribe }}}",
    "{{{RESEND_UNSUBSCRIBE_URL}}}",
    "{{amazonSESUnsubscribeUrl}}",
    "{{ name }}",
    "@@preferences_url@@",
    "@@unsubscribe_url@@",
    "50% off",
    "%%",
    "%41",
    "{{",
    "}}",
]
WORDS = st.text(alphabet="abc xyz.,-", max_size=6)
HOSTILE = st.lists(st.one_of(st.sampled_from(TAGS), WORDS), min_size=1, max_size=5).map("".join).filter(str.strip)
URL = re.compile(r"https?://[^\s\"'<>]+")
READERS = ["a@example.com", "b@example.com"]


def _shown(text: str) -> str:
    """What a reader sees: entities decoded, the invisible breaks gone, lines as wrapped joined again."""
    return " ".join(html.unescape(text).replace("\u200b", "").split())


@pytest.mark.parametrize("name", ["mailgun", "sendgrid", "postmark", "resend", "ses"])
def test_content_with_any_providers_merge_syntax_reaches_every_reader_literally(api, workdir, name):
    fake, settings = api(name)
    with session_scope(settings.database_url) as session:
        issue_id = seed_issue(session, workdir, comparisons=1, readers=0, approved=False).id
    private = [reader_url(settings, purpose, 0) for purpose in (PREFERENCES, UNSUBSCRIBE)]

    @hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(hostile=HOSTILE)
    def check(hostile: str) -> None:
        text = hostile.strip()
        item = comparison("cmp-0", days_ago(1), title=text, question=text)
        item["tools"][0].update(tagline=text, description=text, url=f"https://tool.example/?ref={quote(text, safe='')}")
        item["reviews"][0]["quote"] = text
        before = len(fake.accepted)
        with session_scope(settings.database_url) as session:
            upsert(session, load_files([write_json(workdir / "hostile.json", item)]))
            issue = editing.edit(session, get_issue(session, issue_id), subject=text)
            results = send_test_copies(session, issue, settings, READERS)
        assert all(outcome.ok for _, outcome in results), results
        for message in fake.accepted[before:]:
            assert _shown(message.subject) == _shown(f"[TEST] {text}")
            for body in (message.html, message.text):
                assert _shown(text) in _shown(body)
                # No provider filled in a tag of the content: its links appear nowhere.
                assert "provider.example" not in body
                for url in URL.findall(html.unescape(body)):
                    if not url.startswith(settings.base_url):
                        assert not any(link in url for link in private), url
            assert "provider.example" not in message.subject

    check()
