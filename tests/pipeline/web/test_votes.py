"""Voting from the email: the links in the sent .eml, followed through the real app."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from pipeline.config import get_settings
from pipeline.content.importing import load_files, upsert
from pipeline.content.splits import community_split
from pipeline.content.votes import EXPORT_COLUMNS, reader_votes
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope
from pipeline.store.models import Tool, Vote
from pipeline.web import archive
from pipeline.web.app import create_app
from subscribers.consent import Evidence
from subscribers.lookup import get_by_email
from subscribers.privacy import erase
from subscribers.service import unsubscribe
from subscribers.tokens import make_vote_token
from tests.conftest import comparison, days_ago, outbox_messages, seed_issue, write_json

VOTE_LINK = re.compile(r"https?://\S+/vote/([\w.-]+/\d+)/(ship|skip)")


@pytest.fixture
def sent(workdir, settings, session):
    """An issue sent to three readers through the outbox; returns each reader's vote links by tool name."""
    issue = seed_issue(session, workdir, readers=3)
    send_issue(settings, issue.id, OutboxProvider(settings))
    links: dict[str, dict[tuple[str, str], str]] = {}
    for message in outbox_messages(settings, f"{issue.id}-{issue.week}"):
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        reader = message["To"].addresses[0].addr_spec
        links[reader] = {}
        for block in text.split("\n* ")[1:]:
            name = block.split(" (")[0]
            for token, verdict in VOTE_LINK.findall(block):
                links[reader][(name, verdict)] = f"/vote/{token}/{verdict}"
                assert f"/vote/{token}/{verdict}" in html  # the same link in both parts
    return issue, links


def _counts(settings, tool_name: str) -> tuple[int, int]:
    with session_scope(settings.database_url) as session:
        tool = session.exec(select(Tool).where(Tool.name == tool_name)).one()
        return reader_votes(session, [tool.id])[tool.id]


def test_every_reader_gets_their_own_ship_and_skip_link_per_tool(sent):
    issue, links = sent
    assert len(links) == 3
    for reader_links in links.values():
        assert len(reader_links) == 3 * 2 * 2  # 3 comparisons × 2 tools × ship/skip
    a, b = links["reader0@example.com"], links["reader1@example.com"]
    assert set(a.values()).isdisjoint(b.values())


def test_a_scanner_get_never_votes_and_the_post_votes_once_however_often(client, sent, settings):
    _, links = sent
    link = links["reader0@example.com"][("Alpha cmp-0", "ship")]
    page = client.get(link)
    assert page.status_code == 200 and "Ship Alpha cmp-0?" in page.text and 'method="post"' in page.text
    assert _counts(settings, "Alpha cmp-0") == (0, 0)
    for _ in range(3):
        done = client.post(link)
        assert done.status_code == 200 and "gets your ship" in done.text
    assert _counts(settings, "Alpha cmp-0") == (1, 0)
    assert "Read the full comparison" in done.text and "https://verdicts.example.com/compare/cmp-0" in done.text
    assert "80% ship · 5 votes" in done.text  # imported 3 ship / 1 skip plus this vote


def test_changing_a_vote_moves_the_counts(client, sent, settings):
    _, links = sent
    mine = links["reader1@example.com"]
    assert 'data-testid="earlier"' not in client.get(mine[("Beta cmp-1", "skip")]).text
    client.post(mine[("Beta cmp-1", "ship")])
    assert _counts(settings, "Beta cmp-1") == (1, 0)
    # The page behind a link says what the reader voted before they press anything.
    assert (
        "You voted ship on Beta cmp-1 earlier: this changes your vote to skip."
        in client.get(mine[("Beta cmp-1", "skip")]).text
    )
    assert "You gave Beta cmp-1 your ship already" in client.get(mine[("Beta cmp-1", "ship")]).text
    changed = client.post(mine[("Beta cmp-1", "skip")])
    assert "You changed your vote from ship to skip" in changed.text
    assert _counts(settings, "Beta cmp-1") == (0, 1)
    with session_scope(settings.database_url) as session:
        assert len(session.exec(select(Vote)).all()) == 1


def test_a_tool_added_by_a_re_import_can_be_voted_on_while_the_counts_are_fresh(client, sent, settings, workdir):
    issue, links = sent
    token = links["reader0@example.com"][("Alpha cmp-0", "ship")].split("/")[2]
    assert client.post(links["reader0@example.com"][("Alpha cmp-0", "ship")]).status_code == 200  # counted now
    with session_scope(settings.database_url) as session:  # the comparison gains a third tool
        again = comparison("cmp-0", days_ago(1), tools=3)
        upsert(session, load_files([write_json(workdir / "again.json", [again])]))
        gamma = session.exec(select(Tool).where(Tool.name == "Gamma cmp-0")).one().id
    voted = client.post(f"/vote/{token}/{gamma}/ship")
    assert voted.status_code == 200 and "gets your ship" in voted.text
    assert "Gamma cmp-0" in voted.text and _counts(settings, "Gamma cmp-0") == (1, 0)


def test_forged_tampered_cross_reader_and_other_issue_tokens_are_refused(client, sent, settings, workdir):
    issue, links = sent
    link = links["reader0@example.com"][("Alpha cmp-0", "ship")]
    token, tool = link.split("/")[2:4]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    forged = make_vote_token("not-our-secret", 1, issue.id)
    payload, _, signature = token.partition(".")
    other_reader = links["reader1@example.com"][("Alpha cmp-0", "ship")].split("/")[2]
    spliced = payload + "." + other_reader.partition(".")[2]  # reader0's claim with reader1's signature
    with session_scope(settings.database_url) as session:  # a real tool, from a comparison this issue did not carry
        upsert(session, load_files([write_json(workdir / "later.json", [comparison("cmp-later", days_ago(0.5))])]))
        elsewhere = session.exec(select(Tool).where(Tool.name == "Alpha cmp-later")).one().id
    for bad in (
        f"{tampered}/{tool}",
        f"{forged}/{tool}",
        f"{spliced}/{tool}",
        f"x/{tool}",
        f"{token}/x",
        f"{token}/{elsewhere}",
        token,
    ):
        assert client.post(f"/vote/{bad}/ship").status_code in (400, 404, 405)
        assert client.get(f"/vote/{bad}/ship").status_code in (400, 404)
    maybe = client.post(f"/vote/{token}/{tool}/maybe")
    assert (
        maybe.status_code == 400
        and "&#39;maybe&#39; is not a verdict: a voting link ends in /ship or /skip" in maybe.text
    )
    with session_scope(settings.database_url) as session:
        assert session.exec(select(Vote)).all() == []


def test_links_of_readers_who_left_stop_working_and_erasure_keeps_the_count(client, sent, settings):
    _, links = sent
    client.post(links["reader2@example.com"][("Alpha cmp-0", "skip")])
    with session_scope(settings.database_url) as session:
        unsubscribe(session, get_by_email(session, "reader0@example.com"))
        erase(session, get_by_email(session, "reader2@example.com"), Evidence(source="page"))
    refused = client.post(links["reader0@example.com"][("Alpha cmp-0", "ship")])
    assert refused.status_code == 400 and "no longer works" in refused.text
    assert client.post(links["reader2@example.com"][("Alpha cmp-0", "ship")]).status_code == 400
    with session_scope(settings.database_url) as session:
        [vote] = session.exec(select(Vote)).all()
        assert vote.subscriber_id is None and vote.verdict == "skip"
    assert _counts(settings, "Alpha cmp-0") == (0, 1)


def test_new_votes_show_wherever_the_community_split_is_rendered(client, sent, settings, verdicts, monkeypatch):
    """Every render counts readers' votes: the web version, the editor, later issues, the list and the export."""
    issue, links = sent
    web_before = html.unescape(
        client.get(f"/issues/{issue.week}").text
    )  # the email's HTML keeps non-ASCII as references
    assert "Community —" in web_before  # Beta tools had no imported votes
    for reader in ("reader0@example.com", "reader1@example.com"):
        client.post(links[reader][("Beta cmp-0", "ship")])
    # The web version is rendered at most once a minute: within it, the page as it was; after it, the new split.
    assert html.unescape(client.get(f"/issues/{issue.week}").text) == web_before
    monkeypatch.setattr(archive, "FRESH_SECONDS", 0.0)  # the minute has passed
    web_after = html.unescape(client.get(f"/issues/{issue.week}").text)
    assert "Community 100% ship · 2 votes" in web_after
    assert "Beta cmp-0 100%" in verdicts("comparisons", "list").out
    with session_scope(settings.database_url) as s:
        beta = s.exec(select(Tool).where(Tool.name == "Beta cmp-0")).one()
        assert community_split(beta, reader_votes(s, [beta.id])[beta.id]).label() == "100%"
    exported = verdicts("votes", "export", "--format", "json")
    row = next(r for r in json.loads(exported.out) if r["tool_name"] == "Beta cmp-0")
    assert (row["reader_ship"], row["ship_pct"]) == (2, 100)
    assert client.get("/votes.json").json() == json.loads(exported.out)
    csv_out = verdicts("votes", "export").out.splitlines()
    assert csv_out[0].startswith("comparison,comparison_title,tool,tool_name") and len(csv_out) == 1 + 6


def test_each_new_vote_is_pushed_to_the_site_signed_and_retried_without_holding_the_page(workdir, monkeypatch, sent):
    """A real loopback site that hangs on the first push and then fails it: the reader's page is
    answered meanwhile; the retry arrives signed."""
    received: list[tuple[dict, bytes]] = []
    answered: list[bool] = []
    release = threading.Event()

    class Site(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            first = len(received) == 1
            if first:
                release.wait(10)
            self.send_response(503 if first else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            answered.append(first)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hooks/votes")
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_SECRET", "site-shared-secret")
    monkeypatch.setenv("VERDICTS_WEBHOOK_RETRY_SECONDS", "0.01")  # the old endpoint still gets votes, queued
    get_settings.cache_clear()
    settings = get_settings()
    _, links = sent
    try:
        with TestClient(create_app(settings), base_url="https://testserver") as client:
            assert client.post(links["reader0@example.com"][("Alpha cmp-1", "skip")]).status_code == 200
            assert answered == []  # the reader has the page while the site has not answered anything yet
            client.post(
                links["reader0@example.com"][("Alpha cmp-1", "skip")]
            )  # the same vote again: nothing new to push
            release.set()
            deadline = time.monotonic() + 10
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        release.set()
        server.shutdown()
    assert len(received) == 2  # the failed push and its retry; the repeated vote pushed nothing
    headers, body = received[-1]
    expected = (
        "sha256="
        + hmac.new(
            b"site-shared-secret", headers["X-Verdicts-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
    )
    assert headers["X-Verdicts-Signature"] == expected
    payload = json.loads(body)
    assert (payload["comparison"], payload["tool"], payload["verdict"], payload["previous"]) == (
        "cmp-1",
        "alpha",
        "skip",
        None,
    )
    assert payload["community"] == {"ship": 3, "skip": 2, "ship_pct": 60} and "reader0" not in body.decode()


def test_a_webhook_url_without_a_secret_is_a_configuration_error(workdir, monkeypatch, verdicts):
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_URL", "https://site.example.com/hooks/votes")
    monkeypatch.setenv("VERDICTS_SECRET_KEY", "a-long-random-signing-secret")
    result = verdicts("comparisons", "list")
    assert result.code == 3 and "VERDICTS_VOTES_WEBHOOK_SECRET" in result.err
    assert "a-long-random-signing-secret" not in result.err  # a rule across settings does not echo them all


def test_an_export_before_any_comparison_has_the_whole_header(settings, verdicts):
    """The site's importer reads the columns from the header: a first, empty export must carry them all."""
    empty = verdicts("votes", "export")
    assert empty.code == 0 and empty.out == ",".join(EXPORT_COLUMNS) + "\n"


def test_the_public_feed_names_no_comparison_before_the_site_publishes_it(settings, session, workdir, verdicts):
    """An import may carry next week's comparison: /votes.json (public) leaves it out, the operator's export has it."""
    from datetime import timedelta

    from pipeline.store.models import utcnow

    path = write_json(
        workdir / "c.json",
        [
            comparison("out-now", utcnow() - timedelta(hours=1)),
            comparison("next-week", utcnow() + timedelta(days=7), title="Secret launch"),
        ],
    )
    upsert(session, load_files([path]))
    session.commit()
    with TestClient(create_app(settings)) as client:
        public = {row["comparison"] for row in client.get("/votes.json").json()}
    assert public == {"out-now"}
    assert "next-week" in verdicts("votes", "export").out


def test_a_votes_export_opened_in_a_spreadsheet_runs_no_formula(settings, session, workdir, verdicts):
    path = write_json(workdir / "c.json", [comparison("c1", days_ago(1), title='=HYPERLINK("https://evil.test","x")')])
    upsert(session, load_files([path]))
    session.commit()
    exported = verdicts("votes", "export").out
    assert "'=HYPERLINK(" in exported and ",=HYPERLINK(" not in exported and '"=HYPERLINK(' not in exported
