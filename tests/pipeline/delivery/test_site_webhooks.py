"""Webhooks to the site, against a real receiver on loopback: down (a closed port), then answering 503, then 200."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select, update

from pipeline.config import Settings, get_settings
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.delivery.site_webhooks import WebhookRun, send_due
from pipeline.store.db import session_scope, upgrade
from pipeline.store.models import Issue, Tool, WebhookEvent, WebhookEventStatus, utcnow
from pipeline.store.site_events import retry_wait
from pipeline.web.app import create_app
from subscribers.lookup import get_by_email
from subscribers.service import add_subscriber, unsubscribe
from subscribers.tokens import make_vote_token
from tests.conftest import seed_issue
from tests.fakes.site import Site, closed_port

SECRET = "site-shared-secret"


def _site(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> Settings:
    for key, value in {"WEBHOOK_URL": url, "WEBHOOK_SECRET": SECRET, "WEBHOOK_RETRY_SECONDS": "0.01", **env}.items():
        monkeypatch.setenv(f"VERDICTS_{key}", value)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    return settings


def _events(settings: Settings) -> list[WebhookEvent]:
    with session_scope(settings.database_url) as session:
        return list(session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id))))


def _drain(settings: Settings, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while any(e.status is WebhookEventStatus.pending for e in _events(settings)):
        assert time.monotonic() < deadline, "events still pending"
        send_due(settings)
        time.sleep(0.02)


def test_every_event_reaches_a_site_that_was_down_once_in_order_and_signed(workdir, monkeypatch):
    settings = _site(monkeypatch, f"http://127.0.0.1:{closed_port()}/hooks")
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=2)  # two readers confirmed
    send_issue(settings, issue.id, OutboxProvider(settings))
    with session_scope(settings.database_url) as session:
        reader = get_by_email(session, "reader0@example.com")
        tool = session.exec(select(Tool).order_by(col(Tool.id))).first()
    app = create_app(settings)
    app.state.site_webhooks.stop()  # this test is the only sender (the app's may have tried once already)
    with TestClient(app, base_url="https://testserver") as client:
        token = make_vote_token(settings.secret_key.get_secret_value(), reader.id, issue.id)
        assert client.post(f"/vote/{token}/{tool.id}/ship").status_code == 200
        assert client.post(f"/vote/{token}/{tool.id}/ship").status_code == 200  # the same vote: no new event
    with session_scope(settings.database_url) as session:
        unsubscribe(session, get_by_email(session, "reader1@example.com"), trigger="page")
    types = ["subscriber.confirmed", "subscriber.confirmed", "issue.sent", "vote.cast", "subscriber.unsubscribed"]
    assert [e.type for e in _events(settings)] == types

    # Down: the first event is tried, and the rest wait behind it.
    assert send_due(settings) == WebhookRun(retrying=1)
    head, *rest = _events(settings)
    assert head.attempts >= 1 and head.last_status is None and head.last_error.startswith("no answer")
    assert [e.attempts for e in rest] == [0, 0, 0, 0]

    site = Site(SECRET, failures=2)  # up, but answering 503 twice
    try:
        settings = _site(monkeypatch, site.url)
        _drain(settings)
    finally:
        site.close()
    answers = [(status, h["X-Verdicts-Event-Id"]) for status, h, _ in site.requests]
    assert [s for s, _ in answers] == [503, 503] + [200] * 5
    assert answers[0][1] == answers[1][1] == answers[2][1] == head.uid  # the failed one went again, first
    accepted = site.accepted()
    assert [e["id"] for e in accepted] == [e.uid for e in _events(settings)]  # in order, each once
    assert [e["type"] for e in accepted] == types
    assert all(e.status is WebhookEventStatus.delivered and e.last_status == 200 for e in _events(settings))
    confirmed, _, sent, vote, left = (e["data"] for e in accepted)
    with session_scope(settings.database_url) as session:
        reader0 = get_by_email(session, "reader0@example.com")
        week = session.get(Issue, issue.id).week
    expected_hash = hmac.new(SECRET.encode(), b"reader0@example.com", hashlib.sha256).hexdigest()
    assert confirmed["subscriber_id"] == reader0.id and confirmed["address_hash"] == expected_hash
    assert (left["reason"], sent["issue_id"], sent["week"], sent["sent"]) == ("page", issue.id, week, 2)
    assert sent["url"].endswith(f"/issues/{week}") and sent["comparisons"] == ["cmp-0", "cmp-1", "cmp-2"]
    assert (vote["tool"], vote["verdict"], vote["previous"]) == ("alpha", "ship", None)
    assert set(vote["community"]) == {"ship", "skip", "ship_pct"}
    assert not any(b"@" in body for _, _, body in site.requests)  # no address in any event


def test_no_event_is_queued_for_a_change_that_rolled_back_or_an_event_not_asked_for(workdir, monkeypatch):
    settings = _site(monkeypatch, f"http://127.0.0.1:{closed_port()}/hooks")
    with session_scope(settings.database_url) as session:
        add_subscriber(session, "a@example.com", confirmed=True)
    with pytest.raises(RuntimeError), session_scope(settings.database_url) as session:
        unsubscribe(session, get_by_email(session, "a@example.com"))
        raise RuntimeError("the command failed after the unsubscribe")
    assert [e.type for e in _events(settings)] == ["subscriber.confirmed"]
    settings = _site(monkeypatch, f"http://127.0.0.1:{closed_port()}/hooks", WEBHOOK_EVENTS="issue.sent")
    with session_scope(settings.database_url) as session:
        add_subscriber(session, "b@example.com", confirmed=True)
    assert len(_events(settings)) == 1


def test_waits_double_with_jitter_up_to_an_hour_and_an_event_too_old_is_given_up_for_the_next(workdir, monkeypatch):
    assert [retry_wait(n, 30, lambda: 1.0) for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]
    assert [retry_wait(n, 30, lambda: 0.0) for n in (1, 2, 20)] == [15, 30, 1800]
    site = Site(SECRET, failures=10**6)
    try:
        settings = _site(monkeypatch, site.url, WEBHOOK_RETRY_SECONDS="10")
        with session_scope(settings.database_url) as session:
            add_subscriber(session, "a@example.com", confirmed=True)
            add_subscriber(session, "b@example.com", confirmed=True)
        first, second = _events(settings)
        waits = []
        for attempt in range(1, 6):
            before = utcnow()
            assert send_due(settings) == WebhookRun(retrying=1)
            head = _events(settings)[0]
            waits.append((head.next_attempt_at - before).total_seconds())
            ceiling = 10 * 2 ** (attempt - 1)
            assert ceiling / 2 - 1 <= waits[-1] <= ceiling + 1, (attempt, waits)
            _age(settings, first.id, next_attempt_at=utcnow())  # time passes: due again
        assert waits == sorted(waits) and waits[-1] > 4 * waits[0]
        assert _events(settings)[1].attempts == 0  # the second waited behind the first
        _age(settings, first.id, created_at=utcnow() - timedelta(hours=73))
        assert send_due(settings) == WebhookRun(retrying=1, failed=1)  # given up; the next one went at once
    finally:
        site.close()
    first, second = _events(settings)
    assert (first.status, first.next_attempt_at, first.attempts) == (WebhookEventStatus.failed, None, 6)
    assert (second.status, second.attempts) == (WebhookEventStatus.pending, 1)


def _age(settings: Settings, event_id: int, **values: object) -> None:
    with session_scope(settings.database_url) as session:
        session.exec(update(WebhookEvent).where(col(WebhookEvent.id) == event_id).values(**values))


def test_senders_at_once_deliver_each_event_once_in_order(workdir, monkeypatch):
    site = Site(SECRET)
    try:
        settings = _site(monkeypatch, site.url)
        with session_scope(settings.database_url) as session:
            for i in range(30):
                add_subscriber(session, f"r{i}@example.com", confirmed=True)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: _drain(settings), range(4)))
    finally:
        site.close()
    assert [e["id"] for e in site.accepted()] == [e.uid for e in _events(settings)]
    assert len(site.requests) == 30  # not one sent twice


def test_the_old_votes_endpoint_alone_gets_votes_only_and_both_names_at_once_are_refused(
    workdir, monkeypatch, verdicts
):
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_URL", "http://127.0.0.1:9/hooks/votes")
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_SECRET", SECRET)
    get_settings.cache_clear()
    assert get_settings().webhook_event_types == {"vote.cast"}
    monkeypatch.setenv("VERDICTS_WEBHOOK_URL", "https://site.example.com/hooks")
    monkeypatch.setenv("VERDICTS_WEBHOOK_SECRET", SECRET)
    result = verdicts("webhooks", "list")
    assert result.code == 3 and "VERDICTS_WEBHOOK_URL='https://site.example.com/hooks'" in result.err
    assert "old name" in result.err and SECRET not in result.err
    monkeypatch.delenv("VERDICTS_VOTES_WEBHOOK_URL")
    monkeypatch.setenv("VERDICTS_WEBHOOK_EVENTS", "vote.cast, issue.snet")
    result = verdicts("webhooks", "list")
    assert result.code == 3 and "'issue.snet' is not an event" in result.err and "nothing" not in result.err


def test_the_log_on_the_command_line(workdir, monkeypatch, verdicts):
    settings = _site(monkeypatch, f"http://127.0.0.1:{closed_port()}/hooks")
    with session_scope(settings.database_url) as session:
        add_subscriber(session, "a@example.com", confirmed=True)
    sent = verdicts("webhooks", "send")
    assert sent.code == 0 and "0 delivered, 1 to retry later" in sent.out
    listed = verdicts("webhooks", "list", "--status", "pending")
    assert listed.code == 0 and "subscriber.confirmed" in listed.out and "no answer" in listed.out
    assert _events(settings)[0].uid in listed.out
    wrong = verdicts("webhooks", "list", "--status", "lost")
    assert wrong.code == 4 and "'lost' is not a status" in wrong.err and "pending, delivered, failed" in wrong.err
    assert json.dumps(_events(settings)[0].payload)  # what the log shows is plain JSON
