"""Personal accounts over HTTP: the shared password ends with the first account, disabling or logging out ends a
session at once, a role change applies at the next click, the emailed link sets a password once, TOTP at login,
REQUIRE_2FA leads an admin to enrol first, and APPROVALS_REQUIRED=2 with comments and sign-off on the page."""

from __future__ import annotations

import re

import pyotp
from fastapi.testclient import TestClient

from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import EditorAccount, Issue, IssueStatus
from pipeline.web.app import create_app
from tests.conftest import (
    ACCOUNT_PASSWORD,
    EDITOR_PASSWORD,
    account_login,
    db_snapshot,
    editor_site,
    link_in,
    make_account,
    outbox_messages,
)


def _client(settings) -> TestClient:
    return TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False)


def _csrf(text: str, name: str = "csrf") -> str:
    return re.search(rf'name="{name}" value="([^"]+)"', text).group(1)


def _shared_login(client: TestClient):
    client.cookies.clear()
    csrf = _csrf(client.get("/editor/login").text)
    return client.post("/editor/login", data={"password": EDITOR_PASSWORD, "csrf": csrf})


def test_the_shared_password_works_until_the_first_account_and_then_says_it_stopped(workdir, monkeypatch):
    settings, _ = editor_site(workdir, monkeypatch)
    with _client(settings) as client:
        assert _shared_login(client).status_code == 303
        assert "editor (shared password)" in client.get("/editor").text
        make_account(settings, "chief@example.com", "admin")
        assert client.get("/editor").status_code == 303  # its session ended with the first account
        assert _shared_login(client).status_code == 401
        page = client.get("/editor/login").text
        assert "The shared password no longer works" in page and 'name="email"' in page
        assert account_login(client, "chief@example.com").status_code == 303
        assert "chief@example.com (admin)" in client.get("/editor").text


def test_disabling_ends_the_session_at_once_and_a_role_change_applies_at_the_next_request(workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch)
    make_account(settings, "chief@example.com", "admin")
    ed = make_account(settings, "ed@example.com", "editor")
    with _client(settings) as chief, _client(settings) as editor:
        account_login(chief, "chief@example.com")
        assert account_login(editor, "ed@example.com").status_code == 303
        assert editor.get("/editor/growth").status_code == 200
        admin_csrf = _csrf(chief.get("/editor/accounts").text)
        chief.post(f"/editor/accounts/{ed.id}/role", data={"csrf": admin_csrf, "role": "reviewer"})
        refused = editor.get("/editor/growth")
        assert refused.status_code == 403 and "needs the editor role" in refused.text
        assert chief.post(f"/editor/accounts/{ed.id}/disable", data={"csrf": admin_csrf}).status_code == 303
        assert editor.get(f"/editor/issues/{issue_id}").status_code == 303  # to the login page: the session is gone
        assert account_login(editor, "ed@example.com").status_code == 401
        own = chief.post(f"/editor/accounts/{ed.id - 1}/disable", data={"csrf": admin_csrf})
        assert own.status_code == 422 and "you cannot disable your own account" in own.text


def test_logging_out_ends_the_session_for_every_copy_of_the_cookie(workdir, monkeypatch):
    settings, _ = editor_site(workdir, monkeypatch)
    make_account(settings, "chief@example.com", "admin")
    with _client(settings) as client, _client(settings) as thief:
        account_login(client, "chief@example.com")
        thief.cookies.update(client.cookies)
        assert thief.get("/editor").status_code == 200
        client.post("/editor/logout", data={"csrf": _csrf(client.get("/editor").text)})
        assert thief.get("/editor").status_code == 303


def test_an_admin_adds_an_account_whose_emailed_link_sets_a_password_once(workdir, monkeypatch):
    settings, _ = editor_site(workdir, monkeypatch)
    make_account(settings, "chief@example.com", "admin")
    with _client(settings) as client:
        account_login(client, "chief@example.com")
        csrf = _csrf(client.get("/editor/accounts").text)
        bad = client.post("/editor/accounts", data={"csrf": csrf, "email": "rev@example.com", "role": "owner"})
        assert bad.status_code == 422 and "the role &#39;owner&#39; is not one of" in bad.text
        added = client.post("/editor/accounts", data={"csrf": csrf, "email": "Rev@Example.com", "role": "reviewer"})
        assert added.status_code == 303
        [mail] = outbox_messages(settings, "accounts")
        assert mail["To"] == "rev@example.com" and mail["Auto-Submitted"] == "auto-generated"
        link = link_in(mail, "/editor/password/")
        path = link.split("testserver", 1)[-1] if "testserver" in link else "/" + link.split("/", 3)[3]
        assert "rev@example.com" in client.get(path).text
        short = client.post(path, data={"password": "short", "again": "short"})
        assert short.status_code == 422 and "use at least 12" in short.text
        done = client.post(path, data={"password": ACCOUNT_PASSWORD, "again": ACCOUNT_PASSWORD})
        assert done.status_code == 303
        used = client.get(path)
        assert used.status_code == 410 and "expired or was used already" in used.text
        assert account_login(client, "rev@example.com").status_code == 303


def test_a_reset_asked_for_any_address_gets_the_same_answer_and_mails_only_an_account(workdir, monkeypatch):
    settings, _ = editor_site(workdir, monkeypatch)
    make_account(settings, "chief@example.com", "admin")
    with _client(settings) as client:
        known = client.post("/editor/password/reset", data={"email": "chief@example.com"})
        unknown = client.post("/editor/password/reset", data={"email": "nobody@example.com"})
        assert known.status_code == unknown.status_code == 303
        assert known.headers["location"] == unknown.headers["location"]
    assert [m["To"] for m in outbox_messages(settings, "accounts")] == ["chief@example.com"]


def test_a_totp_account_logs_in_with_a_code_after_the_password_and_never_with_a_used_one(workdir, monkeypatch):
    settings, _ = editor_site(workdir, monkeypatch)
    chief = make_account(settings, "chief@example.com", "admin", totp=True)
    totp = pyotp.TOTP(chief.totp_secret)
    with _client(settings) as client:
        asked = account_login(client, "chief@example.com")
        assert asked.status_code == 200 and 'autocomplete="one-time-code"' in asked.text
        form = {"pending": _csrf(asked.text, "pending"), "csrf": _csrf(asked.text), "next": "/editor"}
        wrong = client.post("/editor/login/code", data={**form, "code": "12345x"})
        assert wrong.status_code == 401 and client.get("/editor").status_code == 303
        code = totp.now()
        assert (
            client.post("/editor/login/code", data={**form, "csrf": _csrf(wrong.text), "code": code}).status_code == 303
        )
        assert client.get("/editor").status_code == 200
        again = account_login(client, "chief@example.com")
        replay = client.post(
            "/editor/login/code",
            data={"pending": _csrf(again.text, "pending"), "csrf": _csrf(again.text), "code": code},
        )
        assert replay.status_code == 401 and "used already" in replay.text


def test_require_2fa_leads_an_admin_to_enrol_before_anything_else(workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch, REQUIRE_2FA="true")
    make_account(settings, "chief@example.com", "admin")
    make_account(settings, "new@example.com", "reviewer")
    with _client(settings) as client:
        account_login(client, "chief@example.com")
        assert client.get(f"/editor/issues/{issue_id}").headers["location"] == "/editor/account?enrol=1"
        page = client.get("/editor/account").text
        # /editor/accounts is not /editor/account: managing accounts waits for the second factor too.
        assert client.get("/editor/accounts").headers["location"] == "/editor/account?enrol=1"
        before = db_snapshot(settings.database_url)
        promote = client.post("/editor/accounts/2/role", data={"csrf": _csrf(page), "role": "admin"})
        assert promote.status_code in (303, 403) and promote.headers.get("location") != "/editor/accounts?done=role"
        assert db_snapshot(settings.database_url) == before
        client.post("/editor/account/totp", data={"csrf": _csrf(page)})
        page = client.get("/editor/account").text
        uri = re.search(r'data-testid="otpauth"[^>]*>([^<]+)<', page).group(1).replace("&amp;", "&")
        assert uri.startswith("otpauth://totp/") and "chief%40example.com" in uri
        code = pyotp.parse_uri(uri).now()
        assert client.post("/editor/account/totp/confirm", data={"csrf": _csrf(page), "code": code}).status_code == 303
        assert client.get(f"/editor/issues/{issue_id}").status_code == 200
        assert "otpauth://" not in client.get("/editor/account").text  # never shown again
        # The session alone cannot swap the factor for another app (a stolen cookie would keep the account).
        page = client.get("/editor/account").text
        swap = client.post("/editor/account/totp", data={"csrf": _csrf(page)})
        assert swap.status_code == 409 and "your second factor is on already" in swap.text
    with session_scope(settings.database_url) as session:
        assert session.get(EditorAccount, 1).totp_secret is not None


def test_two_approvals_from_people_who_did_not_make_the_last_change(workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch, APPROVALS_REQUIRED="2")
    for name in ("ann", "bob", "cy"):
        make_account(settings, f"{name}@example.com", "admin")
    issue = f"/editor/issues/{issue_id}"

    def act(client: TestClient, path: str, **fields: str):
        page = client.get(issue).text
        return client.post(f"{issue}/{path}", data={"csrf": _csrf(page), "revision": _csrf(page, "revision"), **fields})

    with _client(settings) as ann, _client(settings) as bob, _client(settings) as cy:
        for who, client in (("ann", ann), ("bob", bob), ("cy", cy)):
            account_login(client, f"{who}@example.com")
        assert act(ann, "edit", subject="Ann's subject", preheader="", intro="").status_code == 303
        assert "You cannot approve it: you made the last change" in ann.get(issue).text
        before = db_snapshot(settings.database_url)
        forged = act(ann, "approve")
        assert forged.status_code == 422 and "another admin must approve it" in forged.text
        assert db_snapshot(settings.database_url) == before
        assert act(bob, "approve").headers["location"].endswith("done=signed")
        page = bob.get(issue).text
        assert "Approved by bob@example.com (admin)" in page and "Needs 1 more approval" in page
        assert "you approved this version already" in act(bob, "approve").text
        with session_scope(settings.database_url) as session:  # the first of two approvals is on the trail too
            [signed] = [e for e in audit.entries(session, issue_id) if e.action == "issue.approve"]
            assert signed.actor == "bob@example.com (admin)"
        assert act(cy, "comment", text="Fine by me <b>").status_code == 303
        with session_scope(settings.database_url) as session:
            [said] = [e for e in audit.entries(session, issue_id) if e.action == "issue.comment"]
            assert said.actor == "cy@example.com (admin)" and "Fine by me" in str(said.detail)
        assert act(cy, "approve").status_code == 303
        with session_scope(settings.database_url) as session:
            assert session.get(Issue, issue_id).status is IssueStatus.approved
        page = cy.get(issue).text
        assert "Approved by bob@example.com (admin), cy@example.com (admin)" in page
        assert "Fine by me &lt;b&gt;" in page and "cy@example.com (admin)" in page
        # Back to a draft is a new revision: the approvals start again.
        assert act(cy, "cancel").status_code == 303
        assert "Needs 2 more approvals" in cy.get(issue).text


def test_admins_send_now_change_the_time_and_cancel_from_the_issue_page(workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch)
    make_account(settings, "chief@example.com", "admin")
    issue = f"/editor/issues/{issue_id}"
    with _client(settings) as client:
        account_login(client, "chief@example.com")

        def post(path: str, **fields: str):
            page = client.get(issue).text
            data = {"csrf": _csrf(page), "revision": _csrf(page, "revision"), **fields}
            return client.post(f"{issue}/{path}", data=data)

        assert post("approve").status_code == 303
        bad = post("schedule", at="next tuesday")
        assert bad.status_code == 422 and "the send time &#39;next tuesday&#39; is not a date and time" in bad.text
        assert post("send-now").status_code == 303
        with session_scope(settings.database_url) as session:
            assert session.get(Issue, issue_id).scheduled_for is not None
        assert post("cancel").status_code == 303
        with session_scope(settings.database_url) as session:
            row = session.get(Issue, issue_id)
            assert row.status is IssueStatus.draft and row.scheduled_for is None
