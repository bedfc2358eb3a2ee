"""The editor's welcome email page through the real app: the sandboxed preview under the email CSP, the text
twin and lint, and a [TEST] copy that goes to editors only and spends no reader's welcome."""

from __future__ import annotations

from sqlmodel import select

from pipeline.delivery.welcome import CAMPAIGN
from pipeline.store.db import session_scope
from pipeline.store.models import Welcome
from tests.conftest import db_snapshot, outbox_messages
from tests.pipeline.web.test_editor import _client, csrf_of, login


def test_the_welcome_page_and_preview_need_an_editor(editor_env):
    settings, _ = editor_env
    with _client(settings) as client:
        assert client.get("/editor/welcome").headers["location"].startswith("/editor/login")
        assert client.get("/editor/welcome/preview").headers["location"].startswith("/editor/login")
        assert client.post("/editor/welcome/test-send", data={"to": "ed@verdicts.example.com"}).status_code == 403
    assert outbox_messages(settings, CAMPAIGN) == []


def test_the_editor_previews_the_welcome_as_a_reader_gets_it_with_links_that_act_for_nobody(editor_env):
    settings, _ = editor_env
    with _client(settings) as client:
        login(client)
        assert 'href="/editor/welcome"' in client.get("/editor").text
        page = client.get("/editor/welcome?width=375&dark=1")
        assert page.status_code == 200
        assert '<iframe class="email" sandbox' in page.text and 'src="/editor/welcome/preview?dark=1"' in page.text
        assert 'width="375"' in page.text and "No problems found." in page.text
        assert "Hi Reader," in page.text and "every Monday at 09:00 UTC" in page.text  # the text twin
        assert f"{settings.base_url}/issues" in page.text
        preview = client.get("/editor/welcome/preview?dark=1")
        assert "script-src" not in preview.headers["content-security-policy"]
        assert "Hi Reader," in preview.text and "invert(1)" in preview.text
        # The sample's links are reader 0's: they act for nobody.
        assert "/unsubscribe/" in preview.text and "/preferences/" in preview.text


def test_a_test_copy_goes_to_editors_only_and_is_no_readers_welcome(editor_env):
    settings, _ = editor_env
    before = db_snapshot(settings.database_url)
    with _client(settings) as client:
        login(client)
        csrf = csrf_of(client, "/editor/welcome")
        refused = client.post("/editor/welcome/test-send", data={"csrf": csrf, "to": "outsider@example.com"})
        assert refused.status_code == 422 and "not an editor address: outsider@example.com" in refused.text
        assert outbox_messages(settings, CAMPAIGN) == []
        sent = client.post("/editor/welcome/test-send", data={"csrf": csrf, "to": ["chief@verdicts.example.com"]})
        assert sent.status_code == 303 and sent.headers["location"] == "/editor/welcome?done=tested"
        assert "Test copy sent." in client.get(sent.headers["location"]).text
    [mail] = outbox_messages(settings, CAMPAIGN)
    assert mail["To"].addresses[0].addr_spec == "chief@verdicts.example.com"
    assert mail["Subject"] == f"[TEST] Welcome to {settings.from_name}"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with session_scope(settings.database_url) as session:
        assert session.exec(select(Welcome)).all() == []
    after = db_snapshot(settings.database_url)
    assert after.get("welcome") == before.get("welcome") == []
