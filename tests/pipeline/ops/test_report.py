"""An issue's report from a real send through the outbox, the providers' signed webhook events, readers'
votes and one-click unsubscribes made with the links in the sent emails (parsed back with the stdlib), and
clicks counted: on the page's figures, the CLI's CSV and JSON (parsed back) and the trend's SVG."""

from __future__ import annotations

import csv
import email
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from email.policy import default

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select, update

from pipeline.config import get_settings
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.ops.clicks import count_click
from pipeline.ops.report import issue_report
from pipeline.ops.report_chart import trend_svg
from pipeline.store.db import session_scope, upgrade
from pipeline.store.models import Delivery, Issue, IssueItem, utcnow
from pipeline.web.app import create_app
from tests.conftest import seed_issue
from tests.pipeline.delivery.providers import webhook_fixtures as fx

SVG = "{http://www.w3.org/2000/svg}"


def _sent_copies(settings) -> dict[str, email.message.EmailMessage]:
    copies = [email.message_from_bytes(p.read_bytes(), policy=default) for p in settings.outbox_dir.rglob("*.eml")]
    return {str(m["To"]).split("<")[-1].rstrip(">"): m for m in copies}


def _path(url: str) -> str:
    """A link of the email on the in-process app: its path."""
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def sent(workdir, monkeypatch):
    """Five readers sent an issue through the outbox; the fifth copy carried by Postmark (a failover)."""
    keys = fx.Keys()
    for name, value in keys.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        issue_id = seed_issue(session, workdir, readers=5).id
    send_issue(settings, issue_id, OutboxProvider(settings))
    with session_scope(settings.database_url) as session:
        session.exec(update(Delivery).where(Delivery.email == "reader4@example.com").values(provider="postmark"))
        session.commit()
        ids = {d.email: d.id for d in session.exec(select(Delivery)).all()}
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client, settings, keys, issue_id, ids


def _event(client, keys, kind: str, address: str, delivery_id: int) -> None:
    headers, body = fx.postmark(keys, fx.Event(kind, address, delivery_id))
    assert client.post("/webhooks/postmark", content=body, headers=headers).json()["stored"] == 1


def test_the_report_counts_what_providers_said_and_readers_did(sent, verdicts):
    client, settings, keys, issue_id, ids = sent
    for n in range(4):
        _event(client, keys, "delivered", f"reader{n}@example.com", ids[f"reader{n}@example.com"])
    _event(client, keys, "delivered", "reader4@example.com", ids["reader4@example.com"])
    _event(client, keys, "delivered", "reader4@example.com", ids["reader4@example.com"])  # a second report: once
    _event(client, keys, "soft_bounced", "reader3@example.com", ids["reader3@example.com"])
    _event(client, keys, "complained", "reader2@example.com", ids["reader2@example.com"])
    _event(client, keys, "bounced", "reader4@example.com", ids["reader4@example.com"])
    copies = _sent_copies(settings)
    # reader0 leaves with the email's one-click header link; reader1 votes Ship on two tools, reader3 Skip on one.
    one_click = re.search(
        r"<(https?://[^>]+/unsubscribe/[^>]+)>", str(copies["reader0@example.com"]["List-Unsubscribe"])
    )
    assert client.post(_path(one_click.group(1)), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    for reader, votes in (("reader1", ["ship", "ship"]), ("reader3", ["skip"])):
        text = copies[f"{reader}@example.com"].get_body(preferencelist=("plain",)).get_content()
        links = re.findall(r"https?://\S+/vote/\S+/\d+/ship", text)
        for link, verdict in zip(links, votes, strict=False):
            assert client.post(_path(link).removesuffix("ship") + verdict).status_code == 200
    with session_scope(settings.database_url) as session:
        first = session.exec(select(IssueItem).where(IssueItem.issue_id == issue_id)).first()
        for _ in range(3):
            count_click(session, issue_id, first.comparison_id, utcnow())
        report = issue_report(session, issue_id)

    outbox, postmark = report.providers
    assert (outbox.provider, outbox.sent, outbox.delivered, outbox.soft_bounced, outbox.complained) == (
        "outbox",
        4,
        4,
        1,
        1,
    )
    assert (outbox.unsubscribed_link, outbox.unsubscribed_provider, outbox.hard_bounced) == (1, 0, 0)
    assert (postmark.provider, postmark.sent, postmark.delivered, postmark.hard_bounced) == ("postmark", 1, 1, 1)
    assert (report.total.sent, report.total.delivered, report.total.unsubscribed) == (5, 5, 1)
    assert report.voters == 2 and report.voter_share == 40.0
    assert sum(t.ship for t in report.tools) == 2 and sum(t.skip for t in report.tools) == 1
    assert [c.clicks for c in report.clicks][0] == 3 and sum(c.clicks for c in report.clicks) == 3
    assert [(t.issue_id, t.sent, t.delivered, t.voters, t.clicks, t.unsubscribed) for t in report.trend] == [
        (issue_id, 5, 5, 2, 3, 1)
    ]

    as_json = verdicts("issue", "report", str(issue_id), "--format", "json")
    assert as_json.code == 0, as_json.err
    data = json.loads(as_json.out)
    assert data["total"]["delivered"] == 5 and data["voter_share_pct"] == 40.0 and data["opens"] == "not tracked"
    assert {p["provider"]: p["hard_bounced"] for p in data["providers"]} == {"outbox": 0, "postmark": 1}
    as_csv = verdicts("issue", "report", str(issue_id), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.out)))
    cell = {(r["section"], r["name"], r["measure"]): r["value"] for r in rows}
    assert cell["delivery", "all", "sent"] == "5" and cell["delivery", "postmark", "hard_bounced"] == "1"
    assert cell["votes", "all", "voters"] == "2" and cell["clicks", report.clicks[0].comparison, "clicks"] == "3"
    table = verdicts("issue", "report", str(issue_id))
    assert "postmark" in table.out and "Opens are not tracked" in table.out


def test_an_unsubscribe_after_the_next_send_began_counts_for_the_next_issue(sent, workdir):
    client, settings, keys, issue_id, ids = sent
    with session_scope(settings.database_url) as session:
        first = session.get(Issue, issue_id)
        second = Issue(week="2099-W01", subject="Next", cutoff=first.cutoff, send_started_at=utcnow())
        session.add(second)
        first.send_started_at = utcnow() - timedelta(days=7)
        session.add(first)
        session.commit()
    copy = _sent_copies(settings)["reader1@example.com"]
    link = re.search(r"<(https?://[^>]+/unsubscribe/[^>]+)>", str(copy["List-Unsubscribe"])).group(1)
    assert client.post(_path(link), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with session_scope(settings.database_url) as session:
        report = issue_report(session, issue_id)
    assert report.total.unsubscribed_link == 0 and report.next_send_at is not None
    assert [t.week for t in report.trend] == [report.week]


def test_the_trend_chart_is_an_accessible_svg(sent):
    client, settings, keys, issue_id, ids = sent
    with session_scope(settings.database_url) as session:
        report = issue_report(session, issue_id)
    root = ET.fromstring(trend_svg(report.trend))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Trend over the last 1 sent issues"
    desc = root.find(f"{SVG}desc").text
    assert report.week in desc and "5 sent" in desc
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert report.week in labels and "Readers who voted (%)" in labels
    assert not list(root.iter(f"{SVG}script"))
    empty = ET.fromstring(trend_svg([]))
    assert "No issue has been sent yet" in empty.find(f"{SVG}desc").text
