"""Roles and the two-person rule in a real browser (Debian's chromium via Playwright), each person in their own
browser context: a reviewer and an editor see no approve button and a forged POST is refused (403); with
APPROVALS_REQUIRED=2 the admin who made the last change cannot approve it, another admin can, and a second
approval must then come from someone else again."""

from __future__ import annotations

import pytest

from pipeline.store.db import session_scope
from pipeline.store.models import Issue, IssueStatus
from tests.conftest import ACCOUNT_PASSWORD, make_account, seed_issue
from tests.e2e.conftest import shot

APPROVE = "form[action$='/approve'] button"


@pytest.fixture
def newsroom(workdir, monkeypatch, request):
    monkeypatch.setenv("VERDICTS_APPROVALS_REQUIRED", "2")
    monkeypatch.setenv("VERDICTS_EDITOR_EMAILS", "ed@verdicts.example.com")
    base, settings = request.getfixturevalue("live_server")
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=2, approved=False)
    for name, role in (("rev", "reviewer"), ("ed", "editor"), ("ann", "admin"), ("bob", "admin"), ("cy", "admin")):
        make_account(settings, f"{name}@example.com", role)
    return base, settings, issue.id


def _person(browser, base: str, name: str, issue_id: int):
    """A browser context of its own, logged in by the form, on the issue's page."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{base}/editor/issues/{issue_id}")
    page.fill("#email", f"{name}@example.com")
    page.fill("#password", ACCOUNT_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"**/editor/issues/{issue_id}")
    return page


def _forged_approval(page, base: str, issue_id: int):
    """What a hand-made form would post: the session's own csrf token and the page's revision."""
    csrf = page.get_attribute("input[name=csrf]", "value")
    revision = page.get_attribute("input[name=revision]", "value")
    return page.request.post(
        f"{base}/editor/issues/{issue_id}/approve", form={"csrf": csrf, "revision": revision}, max_redirects=0
    )


def _status(settings, issue_id: int) -> IssueStatus:
    with session_scope(settings.database_url) as session:
        return session.get(Issue, issue_id).status


def test_roles_and_the_two_person_rule_in_a_real_browser(newsroom, browser):
    base, settings, issue_id = newsroom

    reviewer = _person(browser, base, "rev", issue_id)
    assert reviewer.locator(APPROVE).count() == 0 and reviewer.locator("#subject-input").is_disabled()
    reviewer.fill("#comment-text", "The second comparison's intro reads oddly.")
    reviewer.click("button:has-text('Post comment')")
    reviewer.wait_for_load_state()
    assert "rev@example.com (reviewer)" in reviewer.locator("[data-testid=comments]").inner_text()
    forged = _forged_approval(reviewer, base, issue_id)
    assert forged.status == 403 and "needs the admin role" in forged.text()
    shot(reviewer, "roles-reviewer")

    editor = _person(browser, base, "ed", issue_id)
    editor.fill("#subject-input", "Edited by the editor")
    editor.click("button:has-text('Save and re-render')")
    editor.wait_for_load_state()
    assert editor.locator("[data-testid=subject]").inner_text() == "Edited by the editor"
    assert editor.locator(APPROVE).count() == 0
    assert _forged_approval(editor, base, issue_id).status == 403
    assert _status(settings, issue_id) is IssueStatus.draft

    ann = _person(browser, base, "ann", issue_id)
    ann.fill("#subject-input", "Ann's last change")
    ann.click("button:has-text('Save and re-render')")
    ann.wait_for_load_state()
    assert ann.locator(APPROVE).count() == 0
    assert "you made the last change" in ann.locator("[data-testid=cannot-approve]").inner_text()
    forged = _forged_approval(ann, base, issue_id)
    assert forged.status == 422 and "another admin must approve it" in forged.text()
    shot(ann, "roles-own-change")

    bob = _person(browser, base, "bob", issue_id)
    bob.click(f"{APPROVE}:has-text('Approve this version')")
    bob.wait_for_load_state()
    signoff = bob.locator("[data-testid=signoff]").inner_text()
    assert "Approved by bob@example.com (admin)" in signoff and "Needs 1 more approval" in signoff
    assert bob.locator(APPROVE).count() == 0  # his one approval is given
    assert _status(settings, issue_id) is IssueStatus.draft

    cy = _person(browser, base, "cy", issue_id)
    cy.click(f"{APPROVE}:has-text('Approve: send at the next run')")
    cy.wait_for_load_state()
    assert cy.locator("[data-testid=status]").inner_text() == "approved"
    assert "bob@example.com (admin), cy@example.com (admin)" in cy.locator("[data-testid=signoff]").inner_text()
    assert _status(settings, issue_id) is IssueStatus.approved
    shot(cy, "roles-approved")
