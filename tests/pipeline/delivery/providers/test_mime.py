"""The .eml files the outbox writes, read back with the stdlib: RFC 2045 body lines, literal unsubscribe links."""

from __future__ import annotations

import email
import re
from email.policy import default

from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.email.render import Recipient, personalise, render_issue
from subscribers.models import Subscriber
from tests.conftest import comparison, days_ago, seed_issue

#: RFC 2045 §6.7: quoted-printable lines are at most 76 characters (the soft break's "=" included).
QP_LINE = 76


def test_every_body_line_fits_quoted_printable_and_decodes_to_what_was_rendered(settings, session, tmp_path):
    long_words = "x" * 300 + " " + "é" * 200  # one unbreakable run, and one whose every byte is escaped
    item = comparison("long", days_ago(1), title="Ünïcode " * 20)
    item["tools"][0]["description"] = long_words
    item["reviews"][0]["quote"] = long_words
    issue = seed_issue(session, tmp_path, items=[item], readers=1)
    issue.intro = f"An intro with a [link](https://verdicts.example.com/{'deep/' * 30}page) and {long_words}"
    session.add(issue)
    session.commit()
    send_issue(settings, issue.id, OutboxProvider(settings))
    [path] = (settings.outbox_dir / f"{issue.id}-{issue.week}").glob("*.eml")
    raw = path.read_bytes()
    message = email.message_from_bytes(raw, policy=default)

    for part in (message.get_body(preferencelist=(kind,)) for kind in ("plain", "html")):
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        encoded = part.as_bytes(policy=default.clone(linesep="\r\n")).split(b"\r\n\r\n", 1)[1]
        long = [line for line in encoded.split(b"\r\n") if len(line) > QP_LINE]
        assert long == [], f"{part.get_content_type()}: {len(long)} body line(s) over {QP_LINE} characters"
    # Decoded, each part is exactly the reader's copy (lines end in CRLF on the wire, RFC 2046, and the
    # stdlib ends a part with a line break).
    row = session.exec(select(Subscriber)).one()
    copy = personalise(render_issue(session, issue, settings), Recipient(row.id, row.email, row.name), settings)
    for kind, rendered in (("plain", copy.text), ("html", copy.html)):
        decoded = message.get_body(preferencelist=(kind,)).get_content()
        assert decoded.replace("\r\n", "\n") == rendered.replace("\r\n", "\n").removesuffix("\n") + "\n"

    # Headers: folded within RFC 5322's 78 columns, except List-Unsubscribe, whose URLs stay literal.
    headers = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]", " ", headers).split("\r\n")
    [unsubscribe] = [h for h in unfolded if h.startswith("List-Unsubscribe:")]
    assert copy.unsubscribe_url in unsubscribe and "=?" not in unsubscribe
    assert [h for h in headers.split("\r\n") if len(h) > 78 and not h.startswith("List-Unsubscribe:")] == []
