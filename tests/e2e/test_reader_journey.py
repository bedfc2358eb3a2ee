"""Issue 24 as one reader lives it, in a real browser (Debian's chromium via Playwright) against the real app under
uvicorn: Ada finds us on a comparison page of our site (another loopback origin framing the embedded form), signs
up inside the frame, confirms with the button, gets the welcome, picks interests, gets her own line-up in the next
issue, and forwards it; her friend Bo follows the link, signs up and confirms, and Ada's page counts him."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import col, select

from pipeline.content.importing import load_files, upsert
from pipeline.content.issues import approve, build_issue
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.delivery.welcome import CAMPAIGN as WELCOME
from pipeline.store.db import session_scope
from subscribers.lookup import get_by_email
from subscribers.models import ConsentEvent, ConsentRecord, SubscriberStatus
from tests.conftest import NOW, comparison, days_ago, link_in, outbox_messages, settled_outbox, write_json
from tests.e2e.conftest import shot
from tests.e2e.test_browser_embed import Site

#: This week's comparisons, newest first, and their tools' category; an older one adds a fourth category.
THIS_WEEK = {"cursor-vs-zed": "Coding", "notion-ai-vs-lex": "Writing", "midjourney-vs-flux": "Images"}
OLDER = ("whisper-vs-deepgram", "Audio")
#: The comparison page of our site where Ada finds the form.
HERE = "notion-ai-vs-lex"
ADA, BO = "ada@example.com", "bo@example.com"

COMPARISON_PAGE = """<!doctype html><html><head><title>Notion AI vs Lex</title></head><body>
<h1>Notion AI vs Lex: which one should you write with?</h1>
<iframe id="signup" src="{src}" title="Subscribe" width="360" height="330"></iframe>
</body></html>"""


@pytest.fixture
def our_site(workdir, monkeypatch) -> Iterator[Site]:
    """The site's comparison pages on a second loopback origin, the one origin allowed to frame the form. Before
    ``live_server``, which reads the setting."""
    site = Site()
    monkeypatch.setenv("VERDICTS_EMBED_ORIGINS", site.origin)
    yield site
    site.close()


def test_a_reader_signs_up_on_a_comparison_page_picks_interests_and_brings_a_friend(
    our_site, live_server, browser, workdir
):
    base, settings = live_server
    _publish_comparisons(settings, workdir)
    ada = browser.new_context(viewport={"width": 420, "height": 800}).new_page()

    _sign_up_in_the_frame(ada, our_site, base)  # 1
    _confirm_with_the_button(ada, settings, ADA)  # 2
    preferences = _choose_interests_from_the_welcome(ada, settings)  # 3
    forwarded = _the_issue_brings_her_line_up(settings)  # 4
    _a_friend_follows_the_forward_link(browser, settings, forwarded)
    ada.goto(preferences)
    assert "1 reader has joined through you." in ada.content()
    shot(ada, "journey-6-ada-referral-count")

    ada_id = _subscriber_id(settings, ADA)
    ada_signup, bo_signup = _signup_record(settings, ADA), _signup_record(settings, BO)
    assert (bo_signup.source, bo_signup.page, bo_signup.referrer_id) == ("form", "cursor-vs-zed", ada_id)
    # 5: where Ada came from: the embed on the comparison page, with the page's utm_* parameters.
    assert (ada_signup.source, ada_signup.page, ada_signup.utm) == ("embed", HERE, {"utm_source": "site"})
    assert ada_signup.referrer_id is None


def _publish_comparisons(settings, workdir: Path) -> None:
    """The comparisons our site published: their categories are the interests a reader can pick."""
    items = []
    for i, (slug, category) in enumerate([*THIS_WEEK.items(), OLDER]):
        item = comparison(slug, days_ago(30 if slug == OLDER[0] else 1 + i / 10))
        for tool in item["tools"]:
            tool["category"] = category
        items.append(item)
    with session_scope(settings.database_url) as session:
        upsert(session, load_files([write_json(workdir / "comparisons.json", items)]))


def _sign_up_in_the_frame(page, site: Site, base: str) -> None:
    """Ada fills the form framed by the comparison page, ticks the page's category, and never leaves the page."""
    site.html = COMPARISON_PAGE.format(src=f"{base}/embed/subscribe?source={HERE}&amp;utm_source=site")
    page.goto(site.origin)
    frame = page.frame_locator("#signup")
    assert frame.locator("label.interest").all_inner_texts() == ["Audio", "Coding", "Images", "Writing"]
    frame.get_by_label("Email address").fill(ADA)
    frame.get_by_label("First name").fill("Ada")
    frame.get_by_label("Writing").check()
    shot(page, "journey-1-comparison-page-form")
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_role("heading", name="Check your inbox").wait_for()
    assert page.url.rstrip("/") == site.origin
    shot(page, "journey-1-comparison-page-check-inbox")


def _confirm_with_the_button(page, settings, address: str) -> None:
    """The confirmation email's link shows one button and changes nothing; the button confirms."""
    [mail] = [m for m in settled_outbox(settings) if m["To"].addresses[0].addr_spec == address]
    page.goto(link_in(mail, "/confirm/"))
    assert page.get_by_role("button").all_inner_texts() == ["Confirm my subscription"]
    assert _status(settings, address) is SubscriberStatus.pending  # a mail scanner opening the link confirms nobody
    shot(page, f"journey-2-confirm-{address.split('@')[0]}")
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You’re in!").wait_for()
    assert _status(settings, address) is SubscriberStatus.confirmed


def _choose_interests_from_the_welcome(page, settings) -> str:
    """One welcome email, with the list's unsubscribe headers and a text twin; its preferences link shows the
    interest ticked at sign-up, and Ada adds one and asks for only those. Returns her preferences page."""
    welcome = _the_one_mail_to(settled_outbox(settings, WELCOME), ADA)
    assert welcome["List-Unsubscribe"].startswith("<") and "/unsubscribe/" in welcome["List-Unsubscribe"]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert welcome.get_content_type() == "multipart/alternative"
    assert "Ada" in welcome.get_body(preferencelist=("plain",)).get_content()
    assert "Ada" in welcome.get_body(preferencelist=("html",)).get_content()
    preferences = link_in(welcome, "/preferences/")
    page.goto(preferences)
    assert page.is_checked("text=Writing") and not page.is_checked("text=Images")
    assert not page.is_checked("#only-interests")
    page.check("text=Images")
    page.check("#only-interests")
    page.click("text=Save interests")
    page.wait_for_url(f"{preferences}?notice=interests")
    assert page.get_by_role("status").inner_text() == "Saved: your next issue follows your interests."
    shot(page, "journey-3-preferences-interests")
    return preferences


def _the_issue_brings_her_line_up(settings) -> str:
    """The editor builds, approves and sends this week's issue (all three comparisons); Ada's copy has only her
    two categories, and a "Forward this verdict" link. Returns that link."""
    with session_scope(settings.database_url) as session:
        issue = build_issue(session, now=NOW, tz=ZoneInfo("UTC"), max_comparisons=5).issue
        approve(session, issue)
        folder = f"{issue.id}-{issue.week}"
    send_issue(settings, issue.id, OutboxProvider(settings))
    mail = _the_one_mail_to(outbox_messages(settings, folder), ADA)
    assert _lineup(mail) == [HERE, "midjourney-vs-flux"]
    html = mail.get_body(preferencelist=("html",)).get_content()
    return re.search(r'<a href="([^"]+)"[^>]*>Forward this verdict', html).group(1)


def _a_friend_follows_the_forward_link(browser, settings, forwarded: str) -> None:
    """Bo, in his own browser, opens the web version Ada forwarded, takes its invitation under the first verdict,
    signs up there and confirms."""
    bo = browser.new_context(viewport={"width": 375, "height": 800}).new_page()
    bo.goto(forwarded)
    assert bo.get_by_role("link", name="Forward this verdict").get_attribute("href") == forwarded
    assert not re.search(r"ada@|a\*\*\*@|/preferences/|/unsubscribe/", bo.content())  # none of Ada's own links
    shot(bo, "journey-4-web-version-forwarded")
    bo.get_by_role("link", name="Get verdicts like this one every week").first.click()
    bo.wait_for_url(re.compile(r"/subscribe\?"))
    code = parse_qs(urlsplit(forwarded).query)["ref"][0]
    assert parse_qs(urlsplit(bo.url).query) == {"source": ["cursor-vs-zed"], "ref": [code]}
    bo.get_by_label("Email address").fill(BO)
    bo.get_by_label("First name").fill("Bo")
    bo.get_by_role("button", name="Subscribe").click()
    bo.get_by_role("heading", name="Check your inbox").wait_for()
    _confirm_with_the_button(bo, settings, BO)
    shot(bo, "journey-5-friend-confirmed")


def _lineup(mail: EmailMessage) -> list[str]:
    """The comparisons an issue email shows, in order: where each "Read the full comparison" link (our counted
    redirect) leads. HEAD, as a link checker would: it reads the redirect without counting a click."""
    text = mail.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(r"Read the full comparison: (\S+)", text)
    return [httpx.head(link).headers["location"].rpartition("/compare/")[2] for link in links]


def _the_one_mail_to(messages: list[EmailMessage], address: str) -> EmailMessage:
    [mail] = [m for m in messages if m["To"].addresses[0].addr_spec == address]
    return mail


def _subscriber_id(settings, address: str) -> int:
    with session_scope(settings.database_url) as session:
        return get_by_email(session, address).id


def _status(settings, address: str) -> SubscriberStatus:
    with session_scope(settings.database_url) as session:
        return get_by_email(session, address).status


def _signup_record(settings, address: str) -> ConsentRecord:
    """The consent record of the address's sign-up (the confirmation has its own)."""
    with session_scope(settings.database_url) as session:
        query = select(ConsentRecord).where(
            ConsentRecord.subscriber_id == get_by_email(session, address).id,
            ConsentRecord.event == ConsentEvent.signup,
        )
        [record] = session.exec(query.order_by(col(ConsentRecord.id))).all()
        session.expunge(record)
        return record
