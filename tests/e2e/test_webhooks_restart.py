"""The site's webhooks across a restart of the real `verdicts serve --workers 2`: events queued while the site was
down are delivered by the next start, each once, though two worker processes send at once."""

from __future__ import annotations

import signal
import time

from sqlmodel import col, select

from pipeline.store.db import session_scope
from pipeline.store.models import WebhookEvent, WebhookEventStatus
from tests.e2e.test_workers import serve  # noqa: F401 (the fixture)
from tests.fakes.site import Site, closed_port

SECRET = "site-shared-secret"


def _events(url: str) -> list[WebhookEvent]:
    with session_scope(url) as session:
        return list(session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id))))


def _until(done, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_events_queued_while_the_site_was_down_reach_it_once_after_a_restart(serve, verdicts):  # noqa: F811
    env = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_RETRY_SECONDS": "0.2"}
    first = serve(WEBHOOK_URL=f"http://127.0.0.1:{closed_port()}/hooks", **env)
    url = first.settings.database_url
    for i in range(3):
        assert verdicts("subscribers", "add", f"r{i}@example.com", "--confirmed").code == 0
    _until(lambda: _events(url)[0].attempts >= 1)  # the workers tried, and the site was down
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(timeout=20)
    assert [e.status for e in _events(url)] == [WebhookEventStatus.pending] * 3

    site = Site(SECRET, failures=1)
    try:
        serve(WEBHOOK_URL=site.url, **env)
        _until(lambda: all(e.status is WebhookEventStatus.delivered for e in _events(url)))
        time.sleep(0.5)  # a duplicate would arrive now
    finally:
        site.close()
    accepted = site.accepted()
    assert [e["id"] for e in accepted] == [e.uid for e in _events(url)]  # each once, in order, signed
    assert [e["type"] for e in accepted] == ["subscriber.confirmed"] * 3
    assert [status for status, _, _ in site.requests] == [503, 200, 200, 200]
