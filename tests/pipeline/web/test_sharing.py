"""Sharing on the web: the public web version invites visitors to subscribe from each comparison and carries
on the referral code a reader's forward link brought them with (never resolved into anything visible, never
cached for the next visitor); the preferences page counts the readers who joined through you."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.email.render import reader_url
from pipeline.store.db import session_scope
from subscribers import service
from subscribers.consent import Evidence
from subscribers.models import Subscriber
from subscribers.tokens import PREFERENCES, REFERRAL, UNSUBSCRIBE, make_token, read_referral
from tests.conftest import seed_issue


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self.links.append((self._href, ""))

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def anchors(page: str) -> list[tuple[str, str]]:
    """Every link of a page as (href, text), entities decoded as a browser would."""
    parser = _Anchors()
    parser.feed(page)
    return parser.links


def invitations(page: str, base: str) -> list[dict[str, list[str]]]:
    """The query of each per-comparison sign-up link."""
    return [
        parse_qs(urlsplit(href).query)
        for href, text in anchors(page)
        if href.startswith(f"{base}/subscribe?source=") and "verdicts like this" in text
    ]


def forward(page: str) -> str:
    [href] = [href for href, text in anchors(page) if text.startswith("Forward this verdict")]
    return href


def _sent_issue(settings, workdir, readers: int = 2) -> tuple[str, dict[str, int]]:
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=readers)
        ids = {s.email: s.id for s in session.exec(select(Subscriber))}
    send_issue(settings, issue.id, OutboxProvider(settings))
    return issue.week, ids


def test_the_web_version_invites_visitors_to_subscribe_per_comparison_carrying_a_valid_ref(live_server, workdir):
    base, settings = live_server
    week, ids = _sent_issue(settings, workdir)
    secret = settings.secret_key.get_secret_value()
    url = f"{base}/issues/{week}"
    code = make_token(secret, REFERRAL, ids["reader1@example.com"])

    plain = httpx.get(url)
    assert plain.status_code == 200
    assert [q["source"] for q in invitations(plain.text, base)] == [["cmp-0"], ["cmp-1"], ["cmp-2"]]
    assert not any("ref" in q for q in invitations(plain.text, base)) and forward(plain.text) == url

    shared = httpx.get(url, params={"ref": code})
    assert shared.status_code == 200
    found = invitations(shared.text, base)
    assert [q["source"] for q in found] == [["cmp-0"], ["cmp-1"], ["cmp-2"]]
    assert all(q["ref"] == [code] for q in found)
    assert forward(shared.text) == f"{url}?ref={code}"
    # The code is carried, not resolved: nothing about the reader who shared is on the page.
    assert "Reader 1" not in shared.text and "reader1@example.com" not in shared.text
    assert read_referral(secret, parse_qs(urlsplit(forward(shared.text)).query)["ref"][0]) == ids["reader1@example.com"]
    # The invitation leads to the sign-up page.
    invite = next(href for href, text in anchors(shared.text) if "verdicts like this" in text)
    assert httpx.get(invite).status_code == 200


def test_a_tampered_or_foreign_ref_is_dropped(live_server, workdir):
    base, settings = live_server
    week, ids = _sent_issue(settings, workdir)
    secret = settings.secret_key.get_secret_value()
    url = f"{base}/issues/{week}"
    code = make_token(secret, REFERRAL, ids["reader0@example.com"])
    reader_id, _, signature = code.partition(".")
    bad = [
        f"{ids['reader1@example.com']}.{signature}",  # another reader's id under this signature
        code[:-1] + ("0" if code[-1] != "0" else "1"),
        make_token(secret, UNSUBSCRIBE, ids["reader0@example.com"]),  # a private token is not a referral code
        "<script>",
    ]
    for ref in bad:
        page = httpx.get(url, params={"ref": ref})
        assert page.status_code == 200, ref
        assert not re.search(r"[?&;]ref=", page.text) and ref not in page.text, ref
        assert forward(page.text) == url and len(invitations(page.text, base)) == 3


def test_visitors_with_different_refs_each_get_their_own_links_from_the_cached_page(live_server, workdir):
    base, settings = live_server
    week, ids = _sent_issue(settings, workdir, readers=4)
    secret = settings.secret_key.get_secret_value()
    url = f"{base}/issues/{week}"
    codes = [make_token(secret, REFERRAL, i) for i in ids.values()] + [""]

    def visit(ref: str) -> tuple[str, str]:
        return ref, httpx.get(url, params={"ref": ref} if ref else None).text

    with ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(visit, codes * 5))
    for ref, page in pages:
        expected = f"{url}?ref={ref}" if ref else url
        assert forward(page) == expected
        assert all(q.get("ref", [""]) == [ref] if ref else "ref" not in q for q in invitations(page, base))
        assert not any(other in page for other in codes if other and other != ref)


def test_preferences_count_confirmed_readers_who_joined_through_you_and_offer_your_forward_link(
    client, session, settings, workdir
):
    week, ids = _sent_issue(settings, workdir, readers=1)
    sharer = ids["reader0@example.com"]
    through_you = Evidence(source="form", referrer_id=sharer)
    for address in ("b@example.com", "c@example.com", "pending@example.com"):
        service.sign_up(session, address, None, through_you)
    service.sign_up(session, "elsewhere@example.com", None, Evidence(source="form"))
    session.flush()
    rows = {s.email: s for s in session.exec(select(Subscriber))}
    for address in ("b@example.com", "c@example.com", "elsewhere@example.com"):
        service.confirm(session, rows[address].id, Evidence(source="email"))
    service.unsubscribe(session, rows["c@example.com"])  # joined, then left: no longer a reader
    session.commit()

    token_url = reader_url(settings, PREFERENCES, sharer)
    page = client.get(token_url.removeprefix(settings.base_url))
    assert page.status_code == 200
    assert "1 reader has joined through you." in page.text
    secret = settings.secret_key.get_secret_value()
    link = forward(page.text)
    assert link == f"{settings.base_url}/issues/{week}?ref={make_token(secret, REFERRAL, sharer)}"
    assert read_referral(secret, link.partition("?ref=")[2]) == sharer

    nobody = client.get(reader_url(settings, PREFERENCES, rows["b@example.com"].id).removeprefix(settings.base_url))
    assert "0 readers have joined through you." in nobody.text

    export = client.get(f"{token_url.removeprefix(settings.base_url)}/data.json").json()
    assert export["readers_referred"] == 1
