"""Adding, listing and removing readers from the CLI."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidInput
from subscribers.service import clean_name, normalise_email
from tests.conftest import db_snapshot


def test_addresses_are_validated_and_normalised():
    assert normalise_email("  Ada@Example.COM ") == "ada@example.com"
    with pytest.raises(InvalidInput, match="not a valid email address"):
        normalise_email("ada@@example.com")


def test_names_cannot_inject_headers():
    assert clean_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert "\n" not in clean_name("Ada\r\nBcc: victim@example.com")


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
    assert bad.code == 1 and bad.err.startswith("error: ") and "not a valid email address" in bad.err
    missing = verdicts("subscribers", "remove", "ghost@example.com")
    assert missing.code == 1 and "no subscriber" in missing.err
    assert db_snapshot(settings.database_url) == before


def test_addresses_every_provider_accepts():
    with pytest.raises(InvalidInput, match="Internationalized characters before the @"):
        normalise_email("jörg@example.com")
    assert normalise_email("a@exämple.com") == "a@xn--exmple-cua.com"
