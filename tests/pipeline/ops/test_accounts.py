"""The account rules on their own: argon2id hashes, TOTP codes that work once, set-password links that die once
used, and a site that always keeps an enabled admin."""

from __future__ import annotations

import pyotp
import pytest

from pipeline.errors import InvalidInput, InvalidState
from pipeline.ops import accounts
from pipeline.store.db import session_scope
from pipeline.store.models import EditorAccount, Role
from tests.conftest import make_account


def test_passwords_are_argon2id_hashes_that_take_the_right_password_only():
    hashed = accounts.hash_password("a long personal password")
    assert hashed.startswith("$argon2id$") and "a long personal password" not in hashed
    assert accounts.password_matches(hashed, "a long personal password")
    assert not accounts.password_matches(hashed, "a long personal passwore")
    assert not accounts.password_matches(None, "anything at all")  # an unset password opens nothing
    assert not accounts.password_matches("pbkdf2_sha256$1$x$y", "x")  # not an argon2 hash: refused, not a 500
    assert accounts.password_problem("short") == "the password has 5 characters: use at least 12"


def test_a_totp_code_logs_in_once_and_a_wrong_code_never():
    secret = accounts.new_totp_secret()
    code = pyotp.TOTP(secret).now()
    step = accounts.totp_step(secret, code, None)
    assert step is not None
    assert accounts.totp_step(secret, code, step) is None  # replayed: the step is spent
    assert accounts.totp_step(secret, "000000" if code != "000000" else "111111", None) is None
    assert accounts.totp_step(secret, "１２３４５６", None) is None  # any characters: refused, never a crash


def test_a_set_password_link_works_once_and_not_after_tampering(settings):
    make_account(settings, "chief@example.com", "admin", password=None)
    with session_scope(settings.database_url) as session:
        account = accounts.find_account(session, "Chief@Example.com")  # normalised
        link = accounts.password_link(settings, account)
        token = link.rsplit("/", 1)[1]
        assert accounts.account_from_link(session, settings, token).id == account.id
        accounts.set_password(session, account, "the new password here")
    with session_scope(settings.database_url) as session:
        with pytest.raises(InvalidInput, match="expired or was used already"):
            accounts.account_from_link(session, settings, token)
        with pytest.raises(InvalidInput, match="expired or was used already"):
            accounts.account_from_link(session, settings, token[:-2] + "xx")
        assert accounts.password_matches(session.get(EditorAccount, account.id).password_hash, "the new password here")


def test_the_last_admin_cannot_be_disabled_or_demoted_and_nobody_disables_themselves(settings):
    chief = make_account(settings, "chief@example.com", "admin")
    with session_scope(settings.database_url) as session:
        account = session.get(EditorAccount, chief.id)
        with pytest.raises(InvalidState, match="chief@example.com is the last admin: make another account admin"):
            accounts.disable(session, account)
        with pytest.raises(InvalidState, match="last admin"):
            accounts.set_role(session, account, Role.editor)
    second = make_account(settings, "second@example.com", "admin")
    with session_scope(settings.database_url) as session:
        with pytest.raises(InvalidState, match="you cannot disable your own account"):
            accounts.disable(session, session.get(EditorAccount, chief.id), by=chief.id)
        accounts.disable(session, session.get(EditorAccount, chief.id), by=second.id)
    with session_scope(settings.database_url) as session:
        assert session.get(EditorAccount, chief.id).disabled_at is not None
        with pytest.raises(InvalidState, match="second@example.com is the last admin"):
            accounts.set_role(session, session.get(EditorAccount, second.id), Role.reviewer)


def test_one_account_per_address_and_a_role_must_be_one_of_three(settings):
    make_account(settings, "ed@example.com", "editor")
    with (
        session_scope(settings.database_url) as session,
        pytest.raises(InvalidInput, match="ed@example.com already has an editor account"),
    ):
        accounts.add_account(session, " ED@example.com ", Role.reviewer)
    with pytest.raises(InvalidInput, match="the role 'owner' is not one of admin, editor, reviewer"):
        accounts.parse_role("owner")
