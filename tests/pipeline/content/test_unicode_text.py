"""Unicode line separators and controls never break a send: refused (single-line fields) or made newlines
(multi-line ones) at import and at edit, naming the record, the field and the character; and a message that
cannot be built anyway stops the send before anything leaves, leaving the issue to fix and send."""

from __future__ import annotations

import re
import unicodedata

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlmodel import select

from pipeline.content.importing import load_files
from pipeline.errors import InvalidInput
from pipeline.store.db import get_engine
from pipeline.store.models import Delivery
from tests.conftest import comparison, days_ago, db_snapshot, editor_site, seed_issue, write_json

#: (path in a record, setter) of every single-line and multi-line text field of the import format.
SINGLE = {
    "title": lambda c, v: c.update(title=v),
    "question": lambda c, v: c.update(question=v),
    "tools[0].name": lambda c, v: c["tools"][0].update(name=v),
    "tools[0].category": lambda c, v: c["tools"][0].update(category=v),
    "tools[0].tagline": lambda c, v: c["tools"][0].update(tagline=v),
    "tools[0].entry_price": lambda c, v: c["tools"][0].update(entry_price=v),
    "reviews[0].reviewer": lambda c, v: c["reviews"][0].update(reviewer=v),
    "reviews[0].lens": lambda c, v: c["reviews"][0].update(lens=v),
}
MULTI = {
    "tools[0].description": lambda c, v: c["tools"][0].update(description=v),
    "reviews[0].quote": lambda c, v: c["reviews"][0].update(quote=v),
}
BREAKS = "\u2028\u2029\u0085\r\n\t\x0b\x0c\x1c\x1d\x1e\x1f"
REFUSED_EVERYWHERE = [chr(c) for c in [*range(0x00, 0x09), 0x1B, 0x7F, *range(0x80, 0x85), 0x9F]] + list(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _load(tmp_path, field_set, value):
    item = comparison("bad-one", days_ago(1))
    field_set(item, value)
    return load_files([write_json(tmp_path / "c.json", [item])])


@hsettings(max_examples=150, deadline=None)
@given(
    field=st.sampled_from(sorted(SINGLE)),
    ch=st.sampled_from(BREAKS + "".join(REFUSED_EVERYWHERE)),
    before=st.text("ab ", min_size=1, max_size=5).filter(str.strip),
    after=st.text("cd ", min_size=1, max_size=5).filter(str.strip),
)
def test_single_line_fields_refuse_every_break_and_control_naming_record_field_and_character(
    tmp_path_factory, field, ch, before, after
):
    tmp_path = tmp_path_factory.mktemp("c")
    with pytest.raises(InvalidInput) as refused:
        _load(tmp_path, SINGLE[field], f"{before}{ch}{after}")
    message = str(refused.value)
    assert f"c.json: record 1 (bad-one): {field}: " in message and f"U+{ord(ch):04X}" in message
    if ch not in "\x00\x1b\x7f\x85\t\n\r":  # the rest are named by Unicode itself
        assert unicodedata.name(ch, "CONTROL CHARACTER") in message


@hsettings(max_examples=60, deadline=None)
@given(field=st.sampled_from(sorted(MULTI)), ch=st.sampled_from("\u2028\u2029\u0085\r"))
def test_multi_line_fields_turn_unicode_separators_into_newlines(tmp_path_factory, field, ch):
    [item] = _load(tmp_path_factory.mktemp("c"), MULTI[field], f"One{ch}Two")
    value = item.tools[0].description if "description" in field else item.reviews[0].quote
    assert value == ("One\n\nTwo" if ch == "\u2029" else "One\nTwo")


@pytest.mark.parametrize("ch", REFUSED_EVERYWHERE)
def test_multi_line_fields_refuse_other_controls_and_bidi_overrides(tmp_path, ch):
    with pytest.raises(InvalidInput, match=rf"reviews\[0\]\.quote: .* contains U\+{ord(ch):04X}"):
        _load(tmp_path, MULTI["reviews[0].quote"], f"fine{ch}text")


def _poison(settings, sql: str, value: str) -> None:
    """Data from before these checks, written straight into the database (``:value`` in ``sql``)."""
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(sa.text(sql), {"value": value})


def _send_stops(verdicts, issue_id: int, *said: str) -> None:
    """`issue send` refuses with the bad-data exit code and a message (no traceback), saying each of ``said``."""
    result = verdicts("issue", "send", str(issue_id))
    assert result.code == 4 and "Traceback" not in result.err
    assert all(words in result.err for words in said), result.err


def test_a_send_meeting_an_unsendable_subject_stops_cleanly_and_the_issue_can_be_fixed_and_sent(
    session, settings, tmp_path, verdicts
):
    issue = seed_issue(session, tmp_path, readers=3)
    _poison(settings, "UPDATE issue SET subject = :value", "Alpha\u2028vs Beta")
    _send_stops(
        verdicts,
        issue.id,
        "has a Subject header that cannot be sent: 'Alpha\\u2028vs Beta' contains U+2028 LINE SEPARATOR",
    )
    assert not settings.outbox_dir.exists()
    assert "approved" in verdicts("issue", "show", str(issue.id)).out
    assert verdicts("issue", "unapprove", str(issue.id)).code == 0
    edited = verdicts("issue", "edit", str(issue.id), "--subject", "Alpha\u2028vs Beta")
    assert (
        edited.code == 4
        and f"issue {issue.id}: the subject 'Alpha\\u2028vs Beta' contains U+2028 LINE SEPARATOR" in edited.err
    )
    assert verdicts("issue", "edit", str(issue.id), "--subject", "Alpha vs Beta").code == 0
    assert verdicts("issue", "approve", str(issue.id)).code == 0
    sent = verdicts("issue", "send", str(issue.id))
    assert sent.code == 0 and "sent 3" in sent.out and "finished" in sent.out


def test_a_reader_whose_name_cannot_go_into_a_header_stops_the_send_before_anything_leaves(
    session, settings, tmp_path, verdicts
):
    issue = seed_issue(session, tmp_path, readers=3)
    _poison(
        settings,
        "UPDATE subscriber SET name = :value WHERE email = 'reader1@example.com'",
        "Reader\u2028Bcc: x@evil.example",
    )
    _send_stops(
        verdicts,
        issue.id,
        "'reader1@example.com' cannot be sent: its To header",
        "U+2028 LINE SEPARATOR",
        "is approved again and nothing was sent",
    )
    assert session.exec(select(Delivery)).all() == []
    _poison(settings, "UPDATE subscriber SET name = :value WHERE email = 'reader1@example.com'", "Reader 1")
    sent = verdicts("issue", "send", str(issue.id))
    assert sent.code == 0 and "sent 3" in sent.out


def test_the_editor_refuses_a_separator_in_the_subject_and_a_test_send_of_old_data_says_why(workdir, monkeypatch):
    from tests.pipeline.web.test_editor import _client, csrf_of, login

    settings, issue_id = editor_site(workdir, monkeypatch)
    with _client(settings) as client:
        login(client)
        csrf = csrf_of(client, f"/editor/issues/{issue_id}")
        before = db_snapshot(settings.database_url)
        page = client.post(f"/editor/issues/{issue_id}/edit", data={"csrf": csrf, "subject": "Alpha\u2028vs Beta"})
        assert page.status_code == 422 and "U+2028 LINE SEPARATOR" in page.text and "the subject" in page.text
        assert db_snapshot(settings.database_url) == before
        _poison(settings, "UPDATE issue SET subject = :value", "Alpha\u0085vs Beta")
        tested = client.post(
            f"/editor/issues/{issue_id}/test-send", data={"csrf": csrf, "to": ["ed@verdicts.example.com"]}
        )
        assert tested.status_code == 422 and "U+0085 NEXT LINE" in tested.text and "Nothing was sent" in tested.text
        assert not re.search(r"Internal Server Error", tested.text)
