"""What monitoring reads: `/healthz` (database and scheduler heartbeat) and `/metrics` (Prometheus, behind a
bearer token), scraped over real HTTP from a real server after real sign-ups, sends, votes and webhooks."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from pipeline.config import get_settings
from pipeline.content.issues import get_issue
from pipeline.delivery.ledger import start_sending
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.errors import EXIT_CONFIGURATION
from pipeline.ops import heartbeat
from pipeline.store.db import session_scope
from pipeline.store.models import Delivery, RunOutcome, utcnow
from pipeline.web.app import create_app
from tests.conftest import link_in, outbox_messages, seed_issue, settled_outbox

TOKEN = "scrape-" + "k" * 32
WEBHOOK_AUTH = "hooks:" + "p" * 16


def _beat(settings, ago: float, **values) -> None:
    now = utcnow()
    heartbeat.save(
        settings.database_url,
        owner="sched:1",
        started_at=now - timedelta(hours=1),
        beat_at=now - timedelta(seconds=ago),
        next_run_at=now + timedelta(days=2),
        **values,
    )


def test_healthz_reports_a_site_that_never_ran_a_scheduler_as_healthy(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok", "scheduler": {"status": "never seen"}}
    # …but the check of the sending says no scheduler runs here.
    assert client.get("/healthz/scheduler").status_code == 503


def test_healthz_follows_the_scheduler_heartbeat(client, settings):
    _beat(
        settings,
        5,
        last_run_job="weekly",
        last_run_at=utcnow() - timedelta(minutes=3),
        last_run_finished_at=utcnow(),
        last_run_outcome=RunOutcome.failed,
        last_run_message="postmark 401: wrong token pm-secret-bits",
    )
    beating = client.get("/healthz")
    assert beating.status_code == 200
    report = beating.json()["scheduler"]
    assert report["status"] == "running" and 4 <= report["last_beat_seconds"] < 30 and report["next_run"]
    assert report["last_run"]["job"] == "weekly" and report["last_run"]["outcome"] == "failed"
    assert "pm-secret-bits" not in beating.text  # a run's message stays in the log and the database

    assert client.get("/healthz/scheduler").status_code == 200

    _beat(settings, heartbeat.STALE_SECONDS + 30)  # the process died: no beat for two and a half minutes
    died = client.get("/healthz")
    # The public pages stay in the load balancer; the scheduler's own check fails.
    assert died.status_code == 200 and died.json()["status"] == "degraded"
    assert died.json()["scheduler"]["status"] == "stopped"
    assert client.get("/healthz/scheduler").status_code == 503

    _beat(settings, 1, stopped_at=utcnow())  # stopped on purpose (SIGTERM): not running either
    stopped = client.get("/healthz/scheduler")
    assert stopped.status_code == 503 and stopped.json()["stopped_at"]
    assert client.get("/healthz").json()["status"] == "degraded"


def test_healthz_answers_503_when_the_database_does_not(settings):
    gone = settings.model_copy(update={"database_url": "postgresql+psycopg://verdicts@127.0.0.1:1/verdicts"})
    with TestClient(create_app(gone)) as client:
        answer = client.get("/healthz")
        assert client.get("/healthz/scheduler").status_code == 503
    assert answer.status_code == 503 and answer.json() == {"status": "error", "database": "unreachable"}


def test_metrics_are_off_without_a_token(client):
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


def test_an_empty_metrics_token_leaves_metrics_off_and_a_short_one_is_refused_unshown(settings, verdicts, monkeypatch):
    # A .env line left blank: the empty token matched "Authorization: Bearer" with nothing after it.
    monkeypatch.setenv("VERDICTS_METRICS_TOKEN", "")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        for header in ("Bearer", "Bearer  ", "bearer"):
            assert client.get("/metrics", headers={"Authorization": header}).status_code == 404, header
    monkeypatch.setenv("VERDICTS_METRICS_TOKEN", "guess-me")
    refused = verdicts("issue", "list")
    assert refused.code == EXIT_CONFIGURATION and "VERDICTS_METRICS_TOKEN: is 8 characters long" in refused.err
    assert "guess-me" not in refused.err  # a secret's value is never echoed in the error
    check = verdicts("config", "check", "--no-dns")
    assert "VERDICTS_METRICS_TOKEN: is 8 characters long" in check.out and "guess-me" not in check.out + check.err


@pytest.fixture
def scraped(workdir, monkeypatch):
    """The token (and a webhook secret) configured before the server starts."""
    monkeypatch.setenv("VERDICTS_METRICS_TOKEN", TOKEN)
    monkeypatch.setenv("VERDICTS_POSTMARK_WEBHOOK_AUTH", WEBHOOK_AUTH)
    get_settings.cache_clear()


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_need_the_bearer_token(scraped, live_server):
    base, _ = live_server
    with httpx.Client(base_url=base) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
        ):
            refused = http.get("/metrics", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer"), headers
            assert "verdicts_" not in refused.text
        assert scrape(http)[("verdicts_delivery_queue", (("status", "pending"),))] == 0


def test_metrics_count_what_happened_whichever_process_did_it(scraped, live_server):
    base, settings = live_server
    with httpx.Client(base_url=base) as http:
        assert ("verdicts_scheduler_heartbeat_age_seconds", ()) not in scrape(http)  # no scheduler here yet

        # A reader signs up on the page and confirms by the emailed link.
        signed_up = http.post("/subscribe", data={"email": "new@example.com", "name": "Nia", "website": ""})
        assert signed_up.status_code == 303 and signed_up.headers["location"] == "/subscribe/check-inbox"
        [confirmation] = settled_outbox(settings)  # sent after the answer
        confirm = link_in(confirmation, "/confirm/")
        assert http.get(confirm).status_code == 200  # the page and its button: a scanner's GET confirms nobody
        assert http.post(confirm).status_code == 303

        # An issue freezes its audience (the queue), then a sender process sends it (the web app does not).
        with session_scope(settings.database_url) as session:
            issue = seed_issue(session, settings.outbox_dir.parent, readers=3)
            start_sending(session, get_issue(session, issue.id))
        queued = scrape(http)
        assert queued[("verdicts_delivery_queue", (("status", "pending"),))] == 4
        send_issue(settings, issue.id, OutboxProvider(settings))

        # Readers act on it: a vote, a one-click unsubscribe; the provider reports a delivery.
        sent = {m["To"].addresses[0].addr_spec: m for m in outbox_messages(settings, f"{issue.id}-{issue.week}")}
        text = sent["reader0@example.com"].get_body(preferencelist=("plain",)).get_content()
        vote = re.search(r"https?://\S+(/vote/[\w.-]+/\d+/ship)", text).group(1)
        assert http.post(vote).status_code == 200
        unsubscribe = re.search(r"<(https?://[^>]+)>", sent["reader1@example.com"]["List-Unsubscribe"]).group(1)
        assert http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        with session_scope(settings.database_url) as session:
            delivery = session.exec(select(Delivery).where(Delivery.email == "reader2@example.com")).one()
        event = {
            "RecordType": "Delivery",
            "Recipient": "reader2@example.com",
            "MessageID": "pm-1",
            "DeliveredAt": "2026-11-27T10:00:00Z",
            "Metadata": {"delivery": str(delivery.id)},
        }
        hook = http.post(
            "/webhooks/postmark",
            content=json.dumps(event),
            headers={
                "Authorization": "Basic " + base64.b64encode(WEBHOOK_AUTH.encode()).decode(),
                "Content-Type": "application/json",
            },
        )
        assert hook.status_code == 200 and hook.json()["stored"] == 1
        _beat(settings, 12)

        figures = scrape(http)

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in figures.items() if n == name and labels.items() <= dict(ls).items())

    assert total("verdicts_messages_total", provider="outbox", outcome="sent") == 4
    assert total("verdicts_messages_total", outcome="failed") == 0
    assert total("verdicts_messages_total", outcome="unknown") == 0
    assert total("verdicts_delivery_queue", status="pending") == total("verdicts_delivery_queue", status="sending") == 0
    assert total("verdicts_webhook_events_total", provider="postmark", kind="delivered") == 1
    assert total("verdicts_consent_events_total", event="signup", source="form") == 1
    assert total("verdicts_consent_events_total", event="confirm", source="email") == 1
    assert total("verdicts_consent_events_total", event="withdraw") == 1
    assert total("verdicts_votes", verdict="ship") == 1 and total("verdicts_votes", verdict="skip") == 0
    assert total("verdicts_subscribers", status="confirmed") == 3
    assert total("verdicts_subscribers", status="unsubscribed") == 1
    assert 12 <= total("verdicts_scheduler_heartbeat_age_seconds") < 60
