"""POST/redirect/GET: every form that changes something answers 303 to a page, so reloading that page (or
going back to it) asks nothing and repeats nothing. The walk covers every POST route the app has: a new
form without a redirect fails here until it gets one (or joins the exceptions, with the reason)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
from fastapi.testclient import TestClient

from pipeline.content.issues import get_issue, issue_comparisons
from pipeline.email.render import reader_url
from pipeline.ops import accounts
from pipeline.store.db import session_scope
from pipeline.store.models import EditorAccount, WebhookEvent, WebhookEventStatus, utcnow
from pipeline.web.app import create_app
from subscribers.lookup import get_by_email
from subscribers.mailer import confirm_url
from subscribers.service import add_subscriber
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE
from tests.conftest import ACCOUNT_PASSWORD, account_login, db_snapshot, make_account, outbox_messages
from tests.pipeline.web.test_editor import PASSWORD
from tests.pipeline.web.test_hostile_input import _api_routes

#: POST routes that answer the form directly, and why that repeats nothing.
EXCEPTIONS = {
    # RFC 8058's one-click POST comes from a mailbox provider, which expects a 200 (the page's own button redirects).
    "/vote/{token}/{tool}/{verdict}",  # shows the community split it just moved; a repeat records the same vote
    "/api/v1/subscribe",  # a JSON API for scripts (202, no page): a repeat is a new request, held by the limits
    "/api/v1/comparisons",  # a JSON API for scripts: a repeat of the same comparisons is "unchanged"
}


def _hidden(text: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]+)"', text).group(1)


def _path(url: str) -> str:
    return urlsplit(url).path


def test_every_form_that_changes_something_redirects_to_a_page_whose_reload_repeats_nothing(editor_env):
    settings, issue_id = editor_env
    with session_scope(settings.database_url) as session:
        reader = get_by_email(session, "reader0@example.com").id
        comparison = issue_comparisons(session, get_issue(session, issue_id))[0].id
        pending = add_subscriber(session, "pending@example.com", "Pat").subscriber.id
        failed = WebhookEvent(uid="0" * 36, type="vote.cast", payload={}, status=WebhookEventStatus.failed)
        session.add(failed)
        session.flush()
        failed_event = failed.id
    confirm = _path(confirm_url(settings, pending))
    prefs, leave = _path(reader_url(settings, PREFERENCES, reader)), _path(reader_url(settings, UNSUBSCRIBE, reader))
    issue = f"/editor/issues/{issue_id}"
    # The first account made below gets id 1: its set-password link, made before it exists.
    set_password = _path(
        f"/editor/password/{accounts._links(settings).dumps([1, accounts.fingerprint(settings, None)])}"
    )
    later = (utcnow() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")

    def first_accounts() -> dict:
        """The personal accounts: from here on, the shared password's session is over."""
        make_account(settings, "chief@verdicts.example.com", "admin", password=None)
        make_account(settings, "ed@verdicts.example.com", "editor")
        return {"email": "chief@verdicts.example.com"}

    def second_factor() -> dict:
        """Chief turns TOTP on; the password step answers the code form (200), whose pending token is posted."""
        with session_scope(settings.database_url) as session:
            chief = session.get(EditorAccount, 1)
            chief.totp_secret = secret = accounts.new_totp_secret()
        form = client.get("/editor/login").text
        csrf = _hidden(form, "csrf")
        answer = client.post(
            "/editor/login",
            data={"email": "chief@verdicts.example.com", "password": ACCOUNT_PASSWORD, "csrf": csrf},
        )
        assert answer.status_code == 200, answer.text[:300]
        code_form = answer.text
        return {
            "pending": _hidden(code_form, "pending"),
            "code": pyotp.TOTP(secret).now(),
            "csrf": _hidden(code_form, "csrf"),
        }

    def enrol_again() -> dict:
        """An admin cleared Chief's lost factor (`editor reset --2fa`): Chief sets one up again."""
        with session_scope(settings.database_url) as session:
            accounts.clear_second_factor(session, session.get(EditorAccount, 1), actor="cli:admin")
        account_login(client, "chief@verdicts.example.com")
        return {"csrf": _hidden(client.get("/editor/account").text, "csrf")}

    def enrol_code() -> dict:
        with session_scope(settings.database_url) as session:
            pending = session.get(EditorAccount, 1).totp_pending
        return {"csrf": _hidden(client.get("/editor/account").text, "csrf"), "code": pyotp.TOTP(pending).now()}

    def accounts_form(extra: dict) -> dict:
        return {"csrf": _hidden(client.get("/editor/accounts").text, "csrf"), **extra}

    def editor(extra: dict | None = None) -> dict:
        text = client.get(issue).text
        return {"csrf": _hidden(text, "csrf"), "revision": _hidden(text, "revision"), **(extra or {})}

    # (route, path, the form's fields as the page would post them), in an order that lets each one succeed.
    forms = [
        ("/subscribe", "/subscribe", lambda: {"email": "new@example.com", "name": "Nia"}),
        ("/embed/subscribe", "/embed/subscribe", lambda: {"email": "framed@example.com"}),
        ("/confirm/{token}", confirm, dict),
        ("/preferences/{token}/pause", f"{prefs}/pause", lambda: {"weeks": "2"}),
        ("/preferences/{token}/name", f"{prefs}/name", lambda: {"name": "Renamed"}),
        ("/preferences/{token}/interests", f"{prefs}/interests", lambda: {"interests": "Developer Tools"}),
        ("/preferences/{token}/unsubscribe", f"{prefs}/unsubscribe", dict),
        ("/preferences/{token}/resubscribe", f"{prefs}/resubscribe", dict),
        ("/unsubscribe/{token}", leave, lambda: {"confirm": "yes"}),
        (
            "/editor/login",
            "/editor/login",
            lambda: {"password": PASSWORD, "csrf": _hidden(client.get("/editor/login").text, "csrf")},
        ),
        ("/editor/build", "/editor/build", lambda: {"csrf": _hidden(client.get("/editor").text, "csrf")}),
        (
            "/editor/issues/{issue_id}/edit",
            f"{issue}/edit",
            lambda: editor({"subject": "Reloaded", "preheader": "P", "intro": ""}),
        ),
        ("/editor/issues/{issue_id}/items/{comparison_id}/{action}", f"{issue}/items/{comparison}/down", editor),
        (
            "/editor/issues/{issue_id}/test-send",
            f"{issue}/test-send",
            lambda: editor({"to": "ed@verdicts.example.com"}),
        ),
        (
            "/editor/welcome/test-send",
            "/editor/welcome/test-send",
            lambda: {"csrf": _hidden(client.get("/editor/welcome").text, "csrf"), "to": "ed@verdicts.example.com"},
        ),
        (
            "/editor/api-tokens",
            "/editor/api-tokens",
            lambda: {"csrf": _hidden(client.get("/editor").text, "csrf"), "name": "site", "scope": "issues:read"},
        ),
        (
            "/editor/api-tokens/{token_id}/revoke",
            "/editor/api-tokens/1/revoke",
            lambda: {"csrf": _hidden(client.get("/editor").text, "csrf")},
        ),
        (
            "/editor/webhooks/{event_id}/retry",
            f"/editor/webhooks/{failed_event}/retry",
            lambda: {"csrf": _hidden(client.get("/editor").text, "csrf")},
        ),
        ("/editor/issues/{issue_id}/approve", f"{issue}/approve", editor),
        ("/editor/issues/{issue_id}/unapprove", f"{issue}/unapprove", editor),
        ("/editor/issues/{issue_id}/comment", f"{issue}/comment", lambda: editor({"text": "Looks right."})),
        ("/editor/issues/{issue_id}/approve", f"{issue}/approve", editor),
        ("/editor/issues/{issue_id}/schedule", f"{issue}/schedule", lambda: editor({"at": later})),
        ("/editor/issues/{issue_id}/send-now", f"{issue}/send-now", editor),
        ("/editor/issues/{issue_id}/cancel", f"{issue}/cancel", editor),
        ("/editor/logout", "/editor/logout", lambda: {"csrf": _hidden(client.get("/editor").text, "csrf")}),
        ("/preferences/{token}/erase", f"{prefs}/erase", lambda: {"confirm": "yes"}),
        ("/editor/password/reset", "/editor/password/reset", first_accounts),
        ("/editor/password/{token}", set_password, lambda: {"password": ACCOUNT_PASSWORD, "again": ACCOUNT_PASSWORD}),
        ("/editor/login/code", "/editor/login/code", second_factor),
        ("/editor/accounts", "/editor/accounts", lambda: accounts_form({"email": "new@example.com", "role": "editor"})),
        ("/editor/accounts/{account_id}/role", "/editor/accounts/2/role", lambda: accounts_form({"role": "reviewer"})),
        ("/editor/accounts/{account_id}/disable", "/editor/accounts/2/disable", lambda: accounts_form({})),
        ("/editor/account/totp", "/editor/account/totp", enrol_again),
        ("/editor/account/totp/confirm", "/editor/account/totp/confirm", enrol_code),
    ]
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        posts = {
            r.path
            for r in _api_routes(client.app.routes)
            if "POST" in r.methods and not r.path.startswith("/webhooks/")
        }
        assert posts - EXCEPTIONS == {route for route, _, _ in forms}, "a POST route this walk does not cover"
        for route, path, fields in forms:
            answer = client.post(path, data=fields())
            assert answer.status_code == 303, f"{route}: {answer.status_code} {answer.text[:300]}"
            landed = client.get(answer.headers["location"])
            assert landed.status_code in (200, 303), (
                f"{route} led to {answer.headers['location']}: {landed.status_code}"
            )
            before, mails = db_snapshot(settings.database_url), len(outbox_messages(settings))
            assert client.get(answer.headers["location"]).status_code == landed.status_code  # the reload
            assert db_snapshot(settings.database_url) == before and len(outbox_messages(settings)) == mails, route
