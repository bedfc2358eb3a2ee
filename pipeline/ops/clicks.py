"""Whether a click on "Read the full comparison" counts, and counting it: one more in the day's aggregate for
the issue and comparison (``ClickCount``), nothing per reader.

Mail scanners at the receiving end (Microsoft Safe Links, Mimecast, Proofpoint, Barracuda …) follow every link
of a message when it arrives, and some browsers fetch links ahead. Those are not readers, so a click is not
counted when:

- it is a HEAD request, or a prefetch (``Sec-Purpose``/``Purpose: prefetch``, ``X-Moz: prefetch``);
- its user agent is empty or names a bot, a scanner, a link preview or an HTTP library;
- the issue has not started sending (an editor's preview or test copy);
- it arrives while the issue is being sent or within ``click_quiet_seconds`` of its last message leaving:
  the burst scanners make right after delivery (a reader who clicks then is not counted: an undercount, by
  design, rather than robots counted as readers);
- (in the web route) its IP network already clicked a link of this issue in the last ``BURST_SECONDS``: a
  scanner that arrives later still follows every link at once, a reader reads the comparison first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlmodel import Session, col, func, select

from pipeline.config import Settings
from pipeline.store.db import dialect_insert
from pipeline.store.models import ClickCount, Delivery, Issue

#: A network's clicks on one issue closer together than this are a scanner's sweep: only the first counts.
BURST_SECONDS = 10.0
#: Lower-case fragments of user agents that are not a person's browser.
SCANNER_AGENTS = (
    "bot",
    "spider",
    "crawl",
    "scan",
    "preview",
    "safelinks",
    "urldefense",
    "mimecast",
    "proofpoint",
    "barracuda",
    "symantec",
    "forcepoint",
    "trendmicro",
    "sophos",
    "fortiguard",
    "headless",
    "python-",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww",
    "httpclient",
    "node-fetch",
    "axios/",
    "facebookexternalhit",
)


def not_a_reader(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a request is a machine's, from the request alone (None: it may be a reader's)."""
    if method == "HEAD":
        return "HEAD request"
    purposes = (headers.get("sec-purpose", ""), headers.get("purpose", ""), headers.get("x-moz", ""))
    if any("prefetch" in p.lower() for p in purposes):
        return "prefetch"
    agent = headers.get("user-agent", "").lower()
    if not agent or any(fragment in agent for fragment in SCANNER_AGENTS):
        return "scanner user agent"
    return None


def in_scanner_burst(session: Session, issue: Issue, now: datetime, settings: Settings) -> str | None:
    """Why a click on ``issue`` at ``now`` falls in a time no reader's click is told from a scanner's."""
    if issue.send_started_at is None:
        return "the issue has not been sent"
    if issue.sent_at is None:
        return "the issue is being sent"
    last = session.exec(select(func.max(col(Delivery.sent_at))).where(col(Delivery.issue_id) == issue.id)).one()
    if now < max(issue.sent_at, last or issue.sent_at) + timedelta(seconds=settings.click_quiet_seconds):
        return "right after the send"
    return None


def count_click(session: Session, issue_id: int, comparison_id: int, now: datetime) -> None:
    """One more click for the day: one statement, so parallel clicks on any process all count."""
    insert = dialect_insert(session.get_bind().dialect.name, ClickCount).values(
        issue_id=issue_id, comparison_id=comparison_id, day=now.date(), clicks=1
    )
    session.exec(
        insert.on_conflict_do_update(
            index_elements=[col(ClickCount.issue_id), col(ClickCount.comparison_id), col(ClickCount.day)],
            set_={"clicks": col(ClickCount.clicks) + 1},
        )
    )
    session.commit()
