"""The API tokens page in real chromium: reached from the issues, a token made and shown once (a reload shows it no
more), used over real HTTP, listed with its last use, revoked with its button (and refused from then on); and
the API's documentation page, which needs no script."""

from __future__ import annotations

import hashlib

import httpx
from sqlmodel import select

from pipeline.store.db import session_scope
from pipeline.store.models import ApiToken
from tests.e2e.conftest import shot

PASSWORD = "editor-password-for-tests"


def test_an_admin_makes_uses_and_revokes_a_token_in_a_real_browser(workdir, monkeypatch, request, browser):
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", PASSWORD)
    base, settings = request.getfixturevalue("live_server")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{base}/editor")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
    page.click("a:has-text('API tokens')")
    page.wait_for_load_state()
    assert page.url == f"{base}/editor/api-tokens" and "No tokens yet." in page.inner_text("#tokens")

    page.click("button:has-text('Make the token')")  # no name: the browser asks for one, nothing is sent
    assert page.url == f"{base}/editor/api-tokens"
    page.fill("#name", "site-deploy")
    page.click("button:has-text('Make the token')")  # no scope: refused, naming the fix
    page.wait_for_load_state()
    assert "give a token at least one scope" in page.inner_text("[role=alert]")
    assert page.input_value("#name") == "site-deploy"
    page.check("input[value='issues:read']")
    page.click("button:has-text('Make the token')")
    page.wait_for_load_state()
    secret = page.inner_text("#new-token").strip()
    assert secret.startswith("vt_") and "shown this once" in page.inner_text("[data-testid=new-token]")
    assert secret not in page.url
    shot(page, "editor-api-token-made")
    with session_scope(settings.database_url) as session:
        row = session.exec(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert row.created_by == "editor (shared password)" and row.scopes == ["issues:read"]

    page.reload()
    assert secret not in page.content() and page.locator("#new-token").count() == 0  # shown once

    answer = httpx.get(f"{base}/api/v1/issues", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer.json() == {"issues": [], "next": None}
    page.reload()
    cells = page.locator("#tokens tbody tr").first.locator("td")
    assert cells.nth(0).inner_text() == "site-deploy" and cells.nth(1).inner_text() == f"{secret[:11]}…"
    assert cells.nth(5).inner_text().endswith("UTC")  # its last use

    page.click("button[aria-label='Revoke site-deploy']")
    page.wait_for_load_state()
    assert "Token revoked" in page.inner_text("[role=status]") and "revoked" in cells.nth(6).inner_text()
    refused = httpx.get(f"{base}/api/v1/issues", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")

    page.goto(f"{base}/api/docs")
    assert "/api/v1/comparisons" in page.inner_text("main") and page.locator("script").count() == 0
    shot(page, "api-docs")
    assert not problems, problems
