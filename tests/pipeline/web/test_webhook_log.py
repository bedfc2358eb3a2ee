"""The editor's delivery log of the site's webhooks: status, last answer, next attempt, and "retry now"."""

from __future__ import annotations

import re
import time

from sqlmodel import col, select, update

from pipeline.store.db import session_scope
from pipeline.store.models import WebhookEvent, WebhookEventStatus
from tests.conftest import editor_site
from tests.fakes.site import Site
from tests.pipeline.web.test_editor import _client, csrf_of, login

SECRET = "site-shared-secret"


def test_the_log_shows_each_event_and_retry_now_delivers_a_failed_one(workdir, monkeypatch):
    site = Site(SECRET)
    try:
        settings, _ = editor_site(
            workdir, monkeypatch, readers=2, WEBHOOK_URL=site.url, WEBHOOK_SECRET=SECRET, WEBHOOK_RETRY_SECONDS="0.01"
        )
        with session_scope(settings.database_url) as session:  # the first reader's event was given up on
            first = session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id))).first()
            values = {
                "status": WebhookEventStatus.failed,
                "attempts": 9,
                "last_status": 503,
                "last_error": "HTTP 503: <b>down</b>",
            }
            session.exec(update(WebhookEvent).where(col(WebhookEvent.id) == first.id).values(**values))
        with _client(settings) as client:
            assert client.get("/editor/webhooks").headers["location"].startswith("/editor/login")
            login(client)
            assert 'href="/editor/webhooks"' in client.get("/editor").text
            _wait(lambda: site.accepted() and len(site.accepted()) == 1)  # the app's sender sent the other one
            log = client.get("/editor/webhooks").text
            row = re.search(rf'<tr data-event="{first.uid}">.*?</tr>', log, re.S).group(0)
            assert "failed" in row and "HTTP 503: &lt;b&gt;down&lt;/b&gt;" in row and "<td>9</td>" in row
            assert "1 pending" not in log and "1 delivered · 1 failed" in log
            retry = f"/editor/webhooks/{first.id}/retry"
            assert client.post(retry, data={"csrf": "forged"}).status_code == 403
            answer = client.post(retry, data={"csrf": csrf_of(client, "/editor/webhooks")})
            assert (answer.status_code, answer.headers["location"]) == (303, "/editor/webhooks?done=retried")
            _wait(lambda: len(site.accepted()) == 2)
            again = client.post(retry, data={"csrf": csrf_of(client)})
            assert again.status_code == 404 and "not a failed event" in again.text
            log = client.get("/editor/webhooks").text
            row = re.search(rf'<tr data-event="{first.uid}">.*?</tr>', log, re.S).group(0)
            assert "delivered" in row and "Retry now" not in row and "2 delivered · 0 failed" in log
    finally:
        site.close()
    assert site.accepted()[-1]["id"] == first.uid  # the same event: the site dedupes by this id


def _wait(done, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.05)
