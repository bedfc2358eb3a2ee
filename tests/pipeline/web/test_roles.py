"""Every editor route × every role: the table says what each route needs, and the walk covers every route the app
has under /editor, so a new route joins the table (and gets its check) or this test fails. A role below a route's
need gets a 403 page saying so, and the database is unchanged; a role that covers it is never refused for its role."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from pipeline.content.issues import get_issue, issue_comparisons
from pipeline.store.db import session_scope
from pipeline.store.models import Role, utcnow
from pipeline.web.app import create_app
from tests.conftest import account_login, db_snapshot, editor_site, make_account
from tests.pipeline.web.test_hostile_input import _api_routes

#: (method, route) → the least role it needs; None: open to anyone (logging in, setting a password).
NEEDS: dict[tuple[str, str], Role | None] = {
    ("GET", "/editor/login"): None,
    ("POST", "/editor/login"): None,
    ("POST", "/editor/login/code"): None,
    ("GET", "/editor/password/reset"): None,
    ("POST", "/editor/password/reset"): None,
    ("GET", "/editor/password/{token}"): None,
    ("POST", "/editor/password/{token}"): None,
    ("POST", "/editor/logout"): Role.reviewer,
    ("GET", "/editor"): Role.reviewer,
    ("GET", "/editor/issues/{issue_id}"): Role.reviewer,
    ("GET", "/editor/issues/{issue_id}/preview"): Role.reviewer,
    ("POST", "/editor/issues/{issue_id}/comment"): Role.reviewer,
    ("GET", "/editor/issues/{issue_id}/report"): Role.reviewer,
    ("GET", "/editor/issues/{issue_id}/report/trend.svg"): Role.reviewer,
    ("GET", "/editor/issues/{issue_id}/report.csv"): Role.reviewer,
    ("GET", "/editor/issues/{issue_id}/report.json"): Role.reviewer,
    ("GET", "/editor/welcome"): Role.reviewer,
    ("GET", "/editor/welcome/preview"): Role.reviewer,
    ("GET", "/editor/account"): Role.reviewer,
    ("POST", "/editor/account/totp"): Role.reviewer,
    ("POST", "/editor/account/totp/confirm"): Role.reviewer,
    ("POST", "/editor/build"): Role.editor,
    ("POST", "/editor/issues/{issue_id}/edit"): Role.editor,
    ("POST", "/editor/issues/{issue_id}/items/{comparison_id}/{action}"): Role.editor,
    ("POST", "/editor/issues/{issue_id}/test-send"): Role.editor,
    ("POST", "/editor/welcome/test-send"): Role.editor,
    ("GET", "/editor/growth"): Role.editor,
    ("POST", "/editor/issues/{issue_id}/approve"): Role.admin,
    ("POST", "/editor/issues/{issue_id}/unapprove"): Role.admin,
    ("POST", "/editor/issues/{issue_id}/schedule"): Role.admin,
    ("POST", "/editor/issues/{issue_id}/send-now"): Role.admin,
    ("POST", "/editor/issues/{issue_id}/cancel"): Role.admin,
    ("GET", "/editor/accounts"): Role.admin,
    ("POST", "/editor/accounts"): Role.admin,
    ("POST", "/editor/accounts/{account_id}/role"): Role.admin,
    ("POST", "/editor/accounts/{account_id}/disable"): Role.admin,
    ("GET", "/editor/api-tokens"): Role.admin,
    ("POST", "/editor/api-tokens"): Role.admin,
    ("POST", "/editor/api-tokens/{token_id}/revoke"): Role.admin,
    ("GET", "/editor/webhooks"): Role.admin,
    ("POST", "/editor/webhooks/{event_id}/retry"): Role.admin,
}
REFUSED = "Not allowed for your role"


@pytest.fixture
def site(workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch)
    for role in Role:
        make_account(settings, f"{role.value}@verdicts.example.com", role.value)
    spare = make_account(settings, "spare@verdicts.example.com", "reviewer")
    with session_scope(settings.database_url) as session:
        comparison = issue_comparisons(session, get_issue(session, issue_id))[0].id
    params = {"issue_id": issue_id, "comparison_id": comparison, "action": "up", "account_id": spare.id, "token": "x"}
    params |= {"token_id": 1, "event_id": 1}  # none exists: a refusal is still a refusal, an allowed one a 404
    return settings, params


def _editor_routes(app) -> set[tuple[str, str]]:
    return {(m, r.path) for r in _api_routes(app.routes) if r.path.startswith("/editor") for m in r.methods}


def _fields() -> dict[str, str]:
    later = (utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    return {"text": "A note", "at": later, "role": "editor", "email": "x@example.com", "to": "ed@verdicts.example.com"}


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_every_editor_route_needs_its_role_and_refuses_the_roles_below(site, role):
    settings, params = site
    app = create_app(settings)
    assert _editor_routes(app) == set(NEEDS), "an editor route is missing from NEEDS (or NEEDS names a gone one)"
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        assert account_login(client, f"{role.value}@verdicts.example.com").status_code == 303
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/editor/account").text).group(1)
        for (method, route), needed in sorted(NEEDS.items(), key=lambda item: item[0][1] == "/editor/logout"):
            if needed is None:
                continue
            path = re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), route)
            before = db_snapshot(settings.database_url)
            answer = client.request(method, path, data={"csrf": csrf, **_fields()} if method == "POST" else None)
            if role.covers(needed):
                assert REFUSED not in answer.text, f"{role} refused {method} {route}"
                assert answer.status_code != 403 or method == "POST" and "expired" in answer.text.lower(), route
            else:
                assert answer.status_code == 403 and REFUSED in answer.text, f"{role} may {method} {route}"
                assert f"needs the {needed.value} role" in answer.text
                assert db_snapshot(settings.database_url) == before, f"{role}'s refused {method} {route} changed data"


def test_pages_show_only_the_buttons_a_role_may_use(site):
    settings, params = site
    issue = f"/editor/issues/{params['issue_id']}"
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        account_login(client, "reviewer@verdicts.example.com")
        page = client.get(issue).text
        assert "Post comment" in page and "reviewer@verdicts.example.com (reviewer)" in client.get("/editor").text
        for button in ("Approve", "Save and re-render\n", "Send a [TEST] copy", "↑ Up", "Build this week"):
            assert button not in page, button
        assert "Build this week" not in client.get("/editor").text
        account_login(client, "editor@verdicts.example.com")
        page = client.get(issue).text
        assert "Send a [TEST] copy" in page and "↑ Up" in page and 'action="' + issue + '/approve"' not in page
        account_login(client, "admin@verdicts.example.com")
        assert 'action="' + issue + '/approve"' in client.get(issue).text
        assert 'href="/editor/accounts"' in client.get("/editor").text
