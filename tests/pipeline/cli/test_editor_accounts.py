"""`verdicts editor add|list|disable|reset`: the first admin is made from the command line with a one-time link."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import EditorAccount, EditorSession, Issue, IssueStatus, utcnow
from pipeline.web.app import create_app
from tests.conftest import account_login, editor_site, make_account, outbox_messages


def test_add_prints_a_link_that_sets_the_password_list_shows_it_disable_locks_it_out(settings, verdicts):
    added = verdicts("editor", "add", "Chief@Example.com", "--role", "admin")
    assert added.code == 0 and "Added chief@example.com (admin)." in added.out
    link = added.out.strip().splitlines()[-1]
    assert "/editor/password/" in link
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        path = "/editor/password/" + link.rsplit("/", 1)[1]
        pw = "the chief's own password"
        assert client.post(path, data={"password": pw, "again": pw}).status_code == 303
        assert account_login(client, "chief@example.com", pw).status_code == 303
    make_account(settings, "ed@example.com", "editor")
    listed = verdicts("editor", "list")
    assert listed.code == 0 and "chief@example.com" in listed.out and "ed@example.com" in listed.out
    assert "invited" not in listed.out.split("chief@example.com")[1].splitlines()[0]
    refused = verdicts("editor", "disable", "chief@example.com")
    assert refused.code != 0 and "chief@example.com is the last admin" in refused.err
    assert verdicts("editor", "disable", "ed@example.com").code == 0
    assert "disabled" in verdicts("editor", "list").out.split("ed@example.com")[1].splitlines()[0]


def test_add_refuses_an_unknown_role_and_reset_emails_a_link(settings, verdicts):
    bad = verdicts("editor", "add", "ed@example.com", "--role", "owner")
    assert bad.code != 0 and "the role 'owner' is not one of admin, editor, reviewer" in bad.err
    assert verdicts("editor", "list").out.startswith("No editor accounts")
    make_account(settings, "ed@example.com", "editor")
    assert verdicts("editor", "reset", "ed@example.com").code == 0
    [mail] = outbox_messages(settings, "accounts")
    assert mail["To"] == "ed@example.com" and "/editor/password/" in mail.get_body(("plain",)).get_content()
    assert verdicts("editor", "reset", "nobody@example.com").code != 0


def test_a_lost_authenticator_is_cleared_by_reset_2fa_and_ends_the_sessions(settings, verdicts):
    make_account(settings, "ed@example.com", "editor")
    with session_scope(settings.database_url) as session:
        account = session.exec(select(EditorAccount)).one()
        account.totp_secret, account.totp_last_step = "JBSWY3DPEHPK3PXP", 7
        session.add(EditorSession(token_hash="1" * 64, csrf="c", password_fingerprint="f", expires_at=utcnow(),
                                  account_id=account.id))  # fmt: skip
    done = verdicts("editor", "reset", "ed@example.com", "--2fa")
    assert done.code == 0 and "second factor is cleared" in done.out
    with session_scope(settings.database_url) as session:
        account = session.exec(select(EditorAccount)).one()
        assert (account.totp_secret, account.totp_last_step) == (None, None)
        assert session.exec(select(EditorSession)).all() == []
        assert [e.action for e in audit.entries(session)][-2:] == ["account.reset_2fa", "account.reset"]


def test_with_two_approvals_required_the_command_line_cannot_approve(settings, verdicts, workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch, APPROVALS_REQUIRED="2")
    refused = verdicts("issue", "approve", str(issue_id))
    assert refused.code != 0 and "approve issue 1 in the editor, where each approver logs in as themself" in refused.err
    with session_scope(settings.database_url) as session:
        assert session.get(Issue, issue_id).status is IssueStatus.draft
