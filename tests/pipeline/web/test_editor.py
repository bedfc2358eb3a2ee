"""Editor pages through the real app (TestClient): no content without a session, CSRF on
every form, lock-out, and each action's effect on the issue."""

from __future__ import annotations

import io
import re
import sys
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from pipeline.config import get_settings
from pipeline.content.issues import approve, get_issue, issue_comparisons
from pipeline.delivery.ledger import pause, start_sending
from pipeline.store.db import session_scope, upgrade
from pipeline.store.models import Delivery, Issue, IssueStatus, utcnow
from pipeline.web.app import create_app
from tests.conftest import EDITOR_PASSWORD as PASSWORD
from tests.conftest import db_snapshot, outbox_messages


def _client(settings) -> TestClient:
    return TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False)


def login(client: TestClient, password: str = PASSWORD):
    form = client.get("/editor/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/editor/login", data={"password": password, "csrf": csrf, "next": "/editor"})


def csrf_of(client: TestClient, path: str = "/editor") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


EDITOR_GETS = ["/editor", "/editor/issues/1", "/editor/issues/1/preview"]
EDITOR_POSTS = [
    "/editor/build",
    "/editor/issues/1/edit",
    "/editor/issues/1/approve",
    "/editor/issues/1/unapprove",
    "/editor/issues/1/test-send",
    "/editor/issues/1/items/1/up",
    "/editor/issues/1/items/1/drop",
    "/editor/logout",
]


def test_without_a_session_every_editor_url_answers_the_login_page_or_403(editor_env):
    settings, _ = editor_env
    before = db_snapshot(settings.database_url)
    with _client(settings) as client:
        for path in EDITOR_GETS:
            response = client.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/editor/login"), path
            assert "Which one should you ship" not in response.text
        for path in EDITOR_POSTS:
            response = client.post(path, data={"subject": "Hacked", "csrf": "x"})
            assert response.status_code == 403 and "Nothing was changed: log in again" in response.text, path
        # An edit posted after the session ended: logging in leads back to the issue, not the list.
        assert (
            'href="/editor/login?next=/editor/issues/1"'
            in client.post("/editor/issues/1/edit", data={"subject": "x"}).text
        )
        client.cookies.set("verdicts_editor", "eyJjc3JmIjoieCJ9.forged.sig", path="/editor")
        assert client.get("/editor").status_code == 303
    assert db_snapshot(settings.database_url) == before


def test_login_sets_a_hardened_session_cookie_and_posts_need_its_csrf_token(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        response = login(client)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Path=/editor" in cookie
        assert client.get("/editor").status_code == 200
        before = db_snapshot(settings.database_url)
        assert client.post(f"/editor/issues/{issue_id}/edit", data={"subject": "No token"}).status_code == 403
        assert (
            client.post(f"/editor/issues/{issue_id}/edit", data={"subject": "Bad token", "csrf": "guess"}).status_code
            == 403
        )
        assert db_snapshot(settings.database_url) == before
        form = _form_of(client, f"/editor/issues/{issue_id}")
        assert client.post(f"/editor/issues/{issue_id}/edit", data={"subject": "With token", **form}).status_code == 303
        csrf = form["csrf"]
        client.post("/editor/logout", data={"csrf": csrf})
        assert client.get("/editor").status_code == 303


def test_a_login_form_without_its_csrf_cookie_and_wrong_passwords_lock_out(editor_env):
    settings, _ = editor_env
    with _client(settings) as client:
        assert client.post("/editor/login", data={"password": PASSWORD, "csrf": "made-up"}).status_code == 403
        for _ in range(settings.editor_lockout_attempts):
            assert login(client, "wrong").status_code == 401
        locked = login(client)  # even the right password, while locked out
        assert locked.status_code == 429 and "verdicts_editor" not in locked.headers.get("set-cookie", "")


def test_a_hashed_password_works_and_no_password_means_no_login(workdir, monkeypatch, verdicts):
    # The operator's way, from a deploy script's pipe: asked once, the hash alone on stdout.
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-passphrase\n"))
    made = verdicts("editor", "hash-password")
    assert made.code == 0 and made.out.startswith("pbkdf2_sha256$") and made.out.count("\n") == 1
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD_HASH", made.out.strip())
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    with _client(settings) as client:
        assert login(client, "s3cret-passphrase").status_code == 303
    monkeypatch.delenv("VERDICTS_EDITOR_PASSWORD_HASH")
    get_settings.cache_clear()
    with _client(get_settings()) as client:
        assert "No editor password is set" in client.get("/editor/login").text


def test_editing_reorder_drop_and_the_lock_after_approval(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        login(client)
        csrf = csrf_of(client)
        page = f"/editor/issues/{issue_id}"
        response = client.post(
            f"{page}/edit",
            data={
                **_form_of(client, page),
                "subject": "Fresh <b>subject</b>",
                "preheader": "Pre",
                "intro": "Hello **editors** <script>alert(1)</script> [site](https://verdicts.example.com)",
            },
        )
        assert response.status_code == 303
        # The email is shown sandboxed: whatever a template or a comparison carries cannot act as our page.
        assert re.search(r'<iframe class="email" sandbox title=', client.get(page).text)
        preview = client.get(f"{page}/preview").text
        assert "<strong>editors</strong>" in preview and "<script>" not in preview and "&lt;script&gt;" in preview
        assert "Fresh &lt;b&gt;subject&lt;/b&gt;" in client.get(page).text
        with session_scope(settings.database_url) as session:
            first, second, third = [c.id for c in issue_comparisons(session, get_issue(session, issue_id))]
        client.post(f"{page}/items/{third}/up", data=_form_of(client, page))
        client.post(f"{page}/items/{first}/drop", data=_form_of(client, page))
        with session_scope(settings.database_url) as session:
            assert [c.id for c in issue_comparisons(session, get_issue(session, issue_id))] == [third, second]
        assert client.post(f"{page}/edit", data={**_form_of(client, page), "subject": "line\nbreak"}).status_code == 422
        blank = client.post(
            f"{page}/edit", data={**_form_of(client, page), "subject": "", "intro": "Kept while the subject is fixed"}
        )
        assert (
            blank.status_code == 422
            and "the subject cannot be empty" in blank.text
            and "Kept while the subject is fixed" in blank.text
        )
        assert client.post(f"{page}/approve", data=_form_of(client, page)).status_code == 303
        before = db_snapshot(settings.database_url)
        refused = client.post(f"{page}/edit", data={**_form_of(client, page), "subject": "Too late"})
        assert refused.status_code == 422 and "unapprove it to edit" in refused.text
        assert db_snapshot(settings.database_url) == before
        client.post(f"{page}/unapprove", data={"csrf": csrf})
        assert (
            client.post(f"{page}/edit", data={**_form_of(client, page), "subject": "Editable again"}).status_code == 303
        )


def test_schedule_and_cancel_a_scheduled_send(editor_env, verdicts):
    settings, issue_id = editor_env
    at = (utcnow().astimezone(settings.tz) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    with _client(settings) as client:
        login(client)
        csrf = csrf_of(client)
        assert (
            client.post(
                f"/editor/issues/{issue_id}/approve", data={**_form_of(client, f"/editor/issues/{issue_id}"), "at": at}
            ).status_code
            == 303
        )
        with session_scope(settings.database_url) as session:
            issue = get_issue(session, issue_id)
            assert issue.status is IssueStatus.approved and issue.scheduled_for.strftime("%Y-%m-%dT%H:%M") == at
        from pipeline.ops.weekly import send_approved

        assert send_approved(settings) == []  # not due yet
        assert "Cancel the scheduled send" in client.get(f"/editor/issues/{issue_id}").text
        client.post(f"/editor/issues/{issue_id}/unapprove", data={"csrf": csrf})
        with session_scope(settings.database_url) as session:
            issue = get_issue(session, issue_id)
            assert issue.status is IssueStatus.draft and issue.scheduled_for is None


def test_test_send_goes_only_to_editor_addresses_and_is_never_a_delivery(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        login(client)
        csrf = csrf_of(client)
        refused = client.post(f"/editor/issues/{issue_id}/test-send", data={"csrf": csrf, "to": "outsider@example.com"})
        assert refused.status_code == 422 and "VERDICTS_EDITOR_EMAILS" in refused.text
        sent = client.post(
            f"/editor/issues/{issue_id}/test-send", data={"csrf": csrf, "to": ["ed@verdicts.example.com"]}
        )
        assert sent.status_code == 303
    with session_scope(settings.database_url) as session:
        assert session.exec(select(Delivery)).all() == []
    folder = next(settings.outbox_dir.iterdir()).name
    [message] = outbox_messages(settings, folder)
    assert message["To"].addresses[0].addr_spec == "ed@verdicts.example.com" and message["Subject"].startswith(
        "[TEST] "
    )


def test_issue_page_shows_preview_widths_lint_text_and_sample_reader(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        login(client)
        page = client.get(f"/editor/issues/{issue_id}?width=375&dark=1&subscriber=2").text
        assert 'width="375"' in page and "dark=1" in page and "reader1@example.com" in page
        assert "of Gmail&#39;s 102 KB clip" in page or "of Gmail's 102 KB clip" in page
        assert "Plain-text version" in page and "View in browser: " in page
        preview = client.get(f"/editor/issues/{issue_id}/preview?dark=1&subscriber=2")
        assert "Reader 1" in preview.text and "invert(1)" in preview.text
        assert "script-src" not in preview.headers["content-security-policy"]
        assert "frame-src 'self'" in client.get(f"/editor/issues/{issue_id}").headers["content-security-policy"]


def test_a_new_password_ends_old_sessions(editor_env, monkeypatch):
    settings, _ = editor_env
    with _client(settings) as client:
        login(client)
        assert client.get("/editor").status_code == 200
        monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", "a brand new passphrase")
        get_settings.cache_clear()
        with _client(get_settings()) as fresh:
            fresh.cookies = client.cookies
            assert fresh.get("/editor").status_code == 303


def test_preview_for_a_real_reader_has_links_that_act_for_nobody(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        login(client)
        preview = client.get(f"/editor/issues/{issue_id}/preview?subscriber=2").text
        assert "Reader 1" in preview
        token = re.search(r"/unsubscribe/([\w.-]+)", preview).group(1)
        from subscribers.tokens import UNSUBSCRIBE, read_token

        assert read_token(settings.secret_key.get_secret_value(), UNSUBSCRIBE, token) == 0


def test_a_stale_page_cannot_undo_a_send_that_has_started(editor_env):
    """The editor's page says approved; the scheduler has moved it to sending meanwhile."""
    from pipeline.content import editing

    settings, issue_id = editor_env
    with session_scope(settings.database_url) as session:
        issue = get_issue(session, issue_id)
        editing.schedule(session, issue, None)
    with session_scope(settings.database_url) as editor, session_scope(settings.database_url) as scheduler:
        stale = get_issue(editor, issue_id)
        running = get_issue(scheduler, issue_id)
        running.status = IssueStatus.sending
        scheduler.add(running)
        scheduler.commit()
        with pytest.raises(Exception, match="sending now"):
            editing.unapprove(editor, stale)
    with session_scope(settings.database_url) as session:
        assert get_issue(session, issue_id).status is IssueStatus.sending


def test_unknown_issue_is_a_404_and_an_old_form_says_it_expired(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        login(client)
        assert client.get("/editor/issues/999").status_code == 404
        stale = client.post(f"/editor/issues/{issue_id}/edit", data={"csrf": "from-an-old-session", "subject": "x"})
        assert stale.status_code == 403 and "This form has expired" in stale.text


def test_a_paused_send_shows_why_and_how_to_resume(editor_env):
    settings, issue_id = editor_env
    with session_scope(settings.database_url) as session:
        issue = session.get(Issue, issue_id)
        approve(session, issue)
        start_sending(session, issue)
        assert pause(session, issue, "postmark is unavailable (HTTP 503: <b>down</b>)")
    with _client(settings) as client:
        login(client)
        page = client.get(f"/editor/issues/{issue_id}").text
    assert 'data-testid="status">paused<' in page
    assert "Sending paused: postmark is unavailable (HTTP 503: &lt;b&gt;down&lt;/b&gt;)" in page
    assert f"verdicts issue send {issue_id}" in page


def _form_of(client: TestClient, page: str) -> dict[str, str]:
    """The hidden fields every form of the issue page carries: what a browser would post back."""
    text = client.get(page).text
    return {
        "csrf": re.search(r'name="csrf" value="([^"]+)"', text).group(1),
        "revision": re.search(r'name="revision" value="(\d+)"', text).group(1),
    }


def test_a_page_opened_before_another_editor_saved_can_neither_overwrite_nor_approve(editor_env):
    """Two editors on one issue: B's page is older than A's save. B's save and B's approval are refused,
    A's words stay, and B's typed text is still in B's form to compare and send again."""
    settings, issue_id = editor_env
    page = f"/editor/issues/{issue_id}"
    with _client(settings) as a, _client(settings) as b:
        login(a), login(b)
        a_form, b_form = _form_of(a, page), _form_of(b, page)
        saved = a.post(f"{page}/edit", data={**a_form, "subject": "A's careful subject", "intro": "A's intro"})
        assert saved.status_code == 303
        before = db_snapshot(settings.database_url)
        # B's browser posts every field of B's (older) page: B changed the subject, the intro is what B's page showed.
        with session_scope(settings.database_url) as session:
            preheader = get_issue(session, issue_id).preheader
        overwrite = b.post(
            f"{page}/edit",
            data={
                **b_form,
                "subject": "B's quick subject",
                "preheader": preheader,
                "intro": "the intro B's page showed",
            },
        )
        assert (
            overwrite.status_code == 409
            and "changed (by another editor" in overwrite.text
            and "nothing was saved" in overwrite.text
        )
        # The form now holds A's words, so saving it again cannot quietly undo them; B's are beside it, to copy from.
        form = overwrite.text.split(f'action="{page}/edit"')[1].split("</form>")[0]
        assert 'value="A&#39;s careful subject"' in form and ">A&#39;s intro</textarea>" in form
        unsaved = overwrite.text.split('data-testid="unsaved"')[1].split("</dl>")[0]
        assert "B&#39;s quick subject" in unsaved and "the intro B&#39;s page showed" in unsaved
        assert "Preheader" not in unsaved  # B's preheader is the saved one: nothing to copy from
        without_revision = b.post(
            f"{page}/edit", data={"csrf": b_form["csrf"], "subject": "From a page before revisions"}
        )
        assert without_revision.status_code == 409
        approval = b.post(f"{page}/approve", data=b_form)
        assert (
            approval.status_code == 409
            and "nothing was approved" in approval.text
            and "look it over, then approve again" in approval.text
        )
        with session_scope(settings.database_url) as session:
            comparison = issue_comparisons(session, get_issue(session, issue_id))[0].id
        drop = b.post(f"{page}/items/{comparison}/drop", data=b_form)
        assert drop.status_code == 409
        assert db_snapshot(settings.database_url) == before
        with session_scope(settings.database_url) as session:
            issue = get_issue(session, issue_id)
            assert (issue.subject, issue.intro, issue.status) == ("A's careful subject", "A's intro", IssueStatus.draft)
        # Reloaded, B sees A's version and may approve it.
        assert b.post(f"{page}/approve", data=_form_of(b, page)).status_code == 303


def test_dropping_or_moving_a_comparison_rewrites_the_words_the_build_wrote_but_not_an_editors(editor_env, verdicts):
    settings, issue_id = editor_env
    page = f"/editor/issues/{issue_id}"
    with session_scope(settings.database_url) as session:
        first, second, third = issue_comparisons(session, get_issue(session, issue_id))
        more = get_issue(session, issue_id).more_count
    with _client(settings) as client:
        login(client)
        assert client.post(f"{page}/items/{first.id}/drop", data=_form_of(client, page)).status_code == 303
        with session_scope(settings.database_url) as session:
            issue = get_issue(session, issue_id)
            assert issue.subject == f"{second.title} + 1 more"
            assert issue.preheader == f"Also this week: {third.title}"
            assert issue.intro.startswith("This week our panel put 2 new comparisons")
            assert issue.more_count == more + 1  # the dropped one is on the site, for a later issue
        assert client.post(f"{page}/items/{third.id}/up", data=_form_of(client, page)).status_code == 303
        with session_scope(settings.database_url) as session:
            assert get_issue(session, issue_id).subject == f"{third.title} + 1 more"
        assert verdicts("issue", "edit", str(issue_id), "--subject", "Our own subject").code == 0
        assert client.post(f"{page}/items/{second.id}/drop", data=_form_of(client, page)).status_code == 303
        with session_scope(settings.database_url) as session:
            issue = get_issue(session, issue_id)
            assert issue.subject == "Our own subject"
            assert issue.preheader == "The panel's verdict, the reviewer split and the community vote."


def test_two_editors_dropping_at_the_same_moment_one_wins_and_the_other_is_told(editor_env):
    """B's drop starts while A's is still open: B waits for A's, then is refused as stale (409), not a crash
    halfway through B's renumbering of items A already changed."""
    import threading

    from pipeline.content import editing

    settings, issue_id = editor_env
    with session_scope(settings.database_url) as session:
        first, second, _ = issue_comparisons(session, get_issue(session, issue_id))
        shown = get_issue(session, issue_id).revision
    outcome: list[BaseException | None] = []

    def editor_b() -> None:
        try:
            with session_scope(settings.database_url) as b:
                editing.drop(b, get_issue(b, issue_id), second.id, shown)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test reports what B got
            outcome.append(exc)

    with session_scope(settings.database_url) as a:
        editing.drop(a, get_issue(a, issue_id), first.id, shown)
        b = threading.Thread(target=editor_b)
        b.start()
        b.join(timeout=1)  # B is waiting for A's transaction
        assert b.is_alive() and not outcome
    b.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], editing.StaleEdit), outcome
    with session_scope(settings.database_url) as session:
        assert [c.id for c in issue_comparisons(session, get_issue(session, issue_id))][
            0
        ] == second.id  # A's drop, alone
