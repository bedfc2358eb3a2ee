"""Adding, listing and removing readers from the CLI."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import col, update

from pipeline.content.safe_text import text_problem
from pipeline.errors import InvalidInput
from pipeline.store.db import session_scope
from subscribers.addresses import clean_name, normalise_email
from subscribers.consent import Evidence
from subscribers.lookup import count_readers, find_subscriber, readers
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.service import sign_up
from tests.conftest import db_snapshot
from tests.fakes.readers import add_readers


def test_addresses_are_validated_and_normalised():
    assert normalise_email("  Ada@Example.COM ") == "ada@example.com"
    with pytest.raises(InvalidInput, match="not a valid email address"):
        normalise_email("ada@@example.com")


def test_names_cannot_inject_headers():
    assert clean_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert "\n" not in clean_name("Ada\r\nBcc: victim@example.com")


#: Any character, with the ones a header check cares about (bidi controls, separators, C1) drawn often.
NAME_CHARS = st.one_of(st.characters(), st.sampled_from("\u202a\u202e\u2066\u2069\u2028\u2029\x85\x9b\x1b"))


@given(st.lists(NAME_CHARS, max_size=40).map("".join))
def test_every_name_a_reader_can_give_passes_the_sends_header_check(raw):
    """One rule: a name accepted at sign-up, import or on the preferences page that the send then refused
    (a bidi override, U+202E, did) would stop the whole send at that reader's batch."""
    try:
        name = clean_name(raw)
    except InvalidInput:
        return
    assert text_problem(name, single_line=True) is None


def test_a_bidi_override_in_a_name_is_refused_by_name():
    with pytest.raises(InvalidInput, match="U\\+202E RIGHT-TO-LEFT OVERRIDE"):
        clean_name("Eve\u202eevil")


def test_add_list_remove(verdicts, settings):
    assert verdicts("subscribers", "add", "ada@example.com", "--name", "Ada").code == 0
    assert verdicts("subscribers", "add", "bob@example.com", "--confirmed").code == 0
    pending = verdicts("subscribers", "list", "--status", "pending").out
    assert "ada@example.com" in pending and "bob@example.com" not in pending
    assert "updated (confirmed)" in verdicts("subscribers", "add", "ada@example.com", "--confirmed").out
    assert verdicts("subscribers", "remove", "ada@example.com").code == 0
    assert "unsubscribed" in verdicts("subscribers", "list").out
    again = verdicts("subscribers", "add", "ada@example.com", "--confirmed")
    assert again.code == 1 and "only they can opt in again" in again.err


def test_bad_address_and_unknown_reader_change_nothing(verdicts, settings):
    before = db_snapshot(settings.database_url)
    bad = verdicts("subscribers", "add", "not an address")
    assert bad.code == 4 and bad.err.startswith("error: ") and "not a valid email address" in bad.err
    missing = verdicts("subscribers", "remove", "ghost@example.com")
    assert missing.code == 4 and "no subscriber" in missing.err
    assert db_snapshot(settings.database_url) == before


def test_addresses_every_provider_accepts():
    with pytest.raises(InvalidInput, match="Internationalized characters before the @"):
        normalise_email("jörg@example.com")
    assert normalise_email("a@exämple.com") == "a@xn--exmple-cua.com"


def test_list_says_how_readers_left_and_pages_a_long_list(verdicts, settings):
    for address in ("ada@example.com", "bob@example.com", "cy@example.com"):
        assert verdicts("subscribers", "add", address, "--confirmed").code == 0
    assert verdicts("subscribers", "remove", "ada@example.com").code == 0
    assert verdicts("subscribers", "suppress", "bob@example.com", "--reason", "bounce").code == 0

    lines = {
        line.split()[1]: line for line in verdicts("subscribers", "list").out.splitlines() if "@example.com" in line
    }
    assert "unsubscribed (admin)" in lines["ada@example.com"] and "unsubscribed (bounce)" in lines["bob@example.com"]
    assert "confirmed" in lines["cy@example.com"] and "(" not in lines["cy@example.com"]

    first_two = verdicts("subscribers", "list", "--limit", "2")
    assert "bob@example.com" in first_two.out and "cy@example.com" not in first_two.out
    assert "Showing the first 2 of 3" in first_two.err and "subscribers export" in first_two.err
    assert verdicts("subscribers", "list", "--limit", "3").err == ""
    assert "Showing the first 1 of 2" in verdicts("subscribers", "list", "--status", "unsubscribed", "--limit", "1").err
    assert verdicts("subscribers", "list", "--status", "pending").out.strip() == "No pending readers."
    assert (
        verdicts("subscribers", "list", "--limit", "1000000").code == 2
    )  # a table of a million rows: `export` is the way
    assert "had already unsubscribed: nothing changed" in verdicts("subscribers", "remove", "ada@example.com").out


def test_readers_stream_by_keyset_pages_in_sign_up_order(session, settings):
    add_readers(settings.database_url, 7)
    session.exec(
        update(Subscriber)
        .where(col(Subscriber.email).in_(["reader1@example.com", "reader4@example.com"]))
        .values(status=SubscriberStatus.unsubscribed)
    )
    session.commit()
    everyone = [f"reader{i}@example.com" for i in range(7)]
    assert [r.email for r in readers(session, page=2)] == everyone
    assert [r.email for r in readers(session, SubscriberStatus.confirmed, page=2)] == [
        e for e in everyone if e[6] not in "14"
    ]
    assert [r.email for r in readers(session, SubscriberStatus.confirmed, limit=3, page=2)] == everyone[0:1] + everyone[
        2:4
    ]
    assert count_readers(session) == 7 and count_readers(session, SubscriberStatus.unsubscribed) == 2


def test_a_sign_up_is_undone_with_the_command_that_made_it(settings):
    """Its savepoint (for a double click's race) must nest on SQLite too: released before any write,
    it committed the reader at once, whatever the command did next."""
    with pytest.raises(RuntimeError), session_scope(settings.database_url) as session:
        sign_up(session, "late@example.com", "Late", Evidence(source="form"))
        raise RuntimeError("the confirmation could not be queued")
    with session_scope(settings.database_url) as session:
        assert find_subscriber(session, "late@example.com") is None
