"""The outbox writes what a provider would receive: real RFC 5322, parsed back with the stdlib."""

from __future__ import annotations

import email
import re
from email.policy import default
from email.utils import parsedate_to_datetime

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from subscribers.lookup import get_by_email
from subscribers.tokens import UNSUBSCRIBE, read_token
from tests.conftest import seed_issue


def test_every_eml_is_a_compliant_newsletter_message(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=3)
    send_issue(settings, issue.id, OutboxProvider(settings))
    files = sorted((settings.outbox_dir / f"{issue.id}-{issue.week}").glob("*.eml"))
    assert len(files) == 3
    message_ids = set()
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=default)
        to = msg["To"].addresses[0]
        reader = get_by_email(session, to.addr_spec)
        assert to.display_name == reader.name
        assert msg["From"].addresses[0].addr_spec == settings.from_email
        assert msg["Subject"] == issue.subject
        assert parsedate_to_datetime(msg["Date"]).tzinfo is not None
        message_ids.add(msg["Message-ID"])

        # multipart/alternative: text first, HTML last
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        text, html = parts[0].get_content(), parts[1].get_content()

        # RFC 2369 + RFC 8058: an https link with a signed token for this reader; no mailto, as no mailbox
        # is configured to read one (tests/pipeline/delivery/test_headers.py covers one that is)
        uris = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
        https = [u for u in uris if u.startswith(settings.base_url + "/unsubscribe/")]
        assert len(https) == 1 and uris == https
        token = https[0].rsplit("/", 1)[1]
        assert read_token(settings.secret_key.get_secret_value(), UNSUBSCRIBE, token) == reader.id
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert settings.list_id in msg["List-Id"]
        # the same private link is visible in both bodies, with the postal address
        assert https[0] in text and https[0].replace("&", "&amp;") in html
        assert settings.postal_address.split(",")[0] in text and settings.postal_address.split(",")[0] in html
        assert reader.email not in https[0]
    assert len(message_ids) == 3


def test_test_send_is_marked_and_not_a_delivery(verdicts, session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=1, approved=False)
    result = verdicts("issue", "test-send", str(issue.id), "--to", "editor@example.com", "--to", "boss@example.org")
    assert result.code == 0, result.err
    tests = sorted(settings.outbox_dir.rglob("test-*.eml"))
    assert len(tests) == 2
    msg = email.message_from_bytes(tests[0].read_bytes(), policy=default)
    assert msg["Subject"] == "[TEST] " + issue.subject
    assert "Delivery" not in "".join(msg.keys())
    show = verdicts("issue", "show", str(issue.id)).out
    assert "sent 0" in show and "draft" in show
