"""The email's "Read the full comparison" link over real HTTP: a signed first-party redirect that 302s to the
comparison and counts one click in aggregate, not when a link scanner follows it (HEAD, prefetch, scanner
agents, the burst right after the send, a sweep of links from one network); a forged link is a 404, never a
redirect elsewhere."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email.policy import default

import httpx
import pytest
from sqlmodel import select, update

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.email.clicks import click_url
from pipeline.store.db import session_scope
from pipeline.store.models import ClickCount, Comparison, Delivery, Issue, utcnow
from tests.conftest import seed_issue

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@pytest.fixture
def site(workdir, monkeypatch, request):
    """A live app behind a trusted proxy on loopback (so each test click can come from its own address) and
    an issue sent through the outbox: (base URL, settings, issue id, the first copy's comparison links)."""
    monkeypatch.setenv("VERDICTS_TRUSTED_PROXIES", "127.0.0.1")
    base, settings = request.getfixturevalue("live_server")
    with session_scope(settings.database_url) as session:
        issue_id = seed_issue(session, workdir, readers=2).id
    send_issue(settings, issue_id, OutboxProvider(settings))
    first = sorted(settings.outbox_dir.rglob("*.eml"))[0]
    copy = email.message_from_bytes(first.read_bytes(), policy=default)
    text = copy.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(r"Read the full comparison: (\S+)", text)
    html = copy.get_body(preferencelist=("html",)).get_content()
    assert links and all(link in html for link in links)
    return base, settings, issue_id, links


def _age_the_send(settings, issue_id: int, seconds: float) -> None:
    """As if the send had finished ``seconds`` ago."""
    with session_scope(settings.database_url) as session:
        back = utcnow() - timedelta(seconds=seconds)
        session.exec(update(Issue).where(Issue.id == issue_id).values(sent_at=back, send_started_at=back))
        session.exec(update(Delivery).where(Delivery.issue_id == issue_id).values(sent_at=back))
        session.commit()


def _clicks(settings) -> int:
    with session_scope(settings.database_url) as session:
        return sum(row.clicks for row in session.exec(select(ClickCount)).all())


def _get(url: str, ip: str, method: str = "GET", **headers: str) -> httpx.Response:
    headers = {"User-Agent": BROWSER, "X-Forwarded-For": ip, **headers}
    return httpx.request(method, url, headers=headers, follow_redirects=False, timeout=10)


def test_the_link_redirects_to_the_comparison_and_counts_one_click_from_a_reader(site):
    base, settings, issue_id, links = site
    with session_scope(settings.database_url) as session:
        urls = {c.id: c.url for c in session.exec(select(Comparison)).all()}
    assert all(link.startswith(f"{base}/r/{issue_id}/") for link in links)
    assert not any("reader" in link or "@" in link for link in links)  # the same link for every reader
    _age_the_send(settings, issue_id, 120)
    comparison_id = int(links[0].split("/")[-2])

    answer = _get(links[0], "203.0.113.5")
    assert answer.status_code == 302 and answer.headers["location"] == urls[comparison_id]
    assert _clicks(settings) == 1
    assert _get(links[1], "203.0.113.5").status_code == 302  # the same network sweeping the issue's links
    assert _clicks(settings) == 1
    assert _get(links[0], "198.51.100.7").status_code == 302  # another reader
    with session_scope(settings.database_url) as session:
        [row] = session.exec(select(ClickCount)).all()
    assert (row.issue_id, row.comparison_id, row.day, row.clicks) == (issue_id, comparison_id, utcnow().date(), 2)


def test_scanners_and_prefetches_are_redirected_but_not_counted(site):
    base, settings, issue_id, links = site
    assert _get(links[0], "192.0.2.1").status_code == 302  # right after the send: the scanners' burst
    _age_the_send(settings, issue_id, 120)
    machines = [
        ("192.0.2.2", "HEAD", {}),
        ("192.0.2.3", "GET", {"Sec-Purpose": "prefetch;prerender"}),
        ("192.0.2.4", "GET", {"Purpose": "prefetch"}),
        ("192.0.2.5", "GET", {"X-Moz": "prefetch"}),
        ("192.0.2.6", "GET", {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}),
        ("192.0.2.7", "GET", {"User-Agent": "python-requests/2.32"}),
        ("192.0.2.8", "GET", {"User-Agent": ""}),
    ]
    for ip, method, headers in machines:
        assert _get(links[0], ip, method, **headers).status_code == 302, (method, headers)
    assert _clicks(settings) == 0
    assert _get(links[0], "192.0.2.9").status_code == 302
    assert _clicks(settings) == 1


def test_a_click_within_the_quiet_time_after_the_send_is_not_counted(site):
    base, settings, issue_id, links = site
    _age_the_send(settings, issue_id, settings.click_quiet_seconds - 20)
    assert _get(links[0], "203.0.113.20").status_code == 302
    assert _clicks(settings) == 0


def test_a_forged_or_changed_link_is_a_404_and_redirects_nowhere(site):
    base, settings, issue_id, links = site
    _age_the_send(settings, issue_id, 120)
    prefix, comparison, signature = links[0].rsplit("/", 2)
    other = int(links[1].split("/")[-2])
    forged = [
        f"{prefix}/{comparison}/{'0' * len(signature)}",
        f"{prefix}/{other}/{signature}",  # another comparison with this one's signature
        f"{base}/r/{issue_id + 1}/{comparison}/{signature}",
        f"{prefix}/{comparison}/{signature}?next=https://evil.example.com",
    ]
    for url in forged[:3]:
        answer = _get(url, "203.0.113.30")
        assert answer.status_code == 404 and "location" not in answer.headers, url
        assert "not valid" in answer.text
    answer = _get(forged[3], "203.0.113.31")
    assert answer.status_code == 302 and "evil" not in answer.headers["location"]


def test_links_before_the_send_redirect_without_counting_and_the_web_version_links_directly(workdir, live_server):
    base, settings = live_server
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=1)
        comparison = session.exec(select(Comparison)).first()
        link = click_url(settings, issue.id, comparison.id)  # as in an editor's preview or test copy
        issue_id, week, url = issue.id, issue.week, comparison.url
    assert _get(link, "203.0.113.40").status_code == 302 and _clicks(settings) == 0
    send_issue(settings, issue_id, OutboxProvider(settings))
    web = httpx.get(f"{base}/issues/{week}", timeout=10).text
    assert url in web and f"/r/{issue_id}/" not in web
