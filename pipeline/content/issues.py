"""Building an issue from the week's new comparisons, and its lifecycle: draft → approved → sending → sent."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, func, select, update

from pipeline.errors import InvalidState, NotFound
from pipeline.store.db import savepoint
from pipeline.store.models import (
    Comparison,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueItem,
    IssueStatus,
    saved_id,
    utcnow,
)

FIRST_ISSUE_WINDOW = timedelta(days=7)
#: How late a comparison may be imported and still make the next issue.
LATE_IMPORT_WINDOW = timedelta(days=7)


def iso_week(moment: datetime, tz: ZoneInfo) -> str:
    """The issue key: the ISO week of ``moment`` in the newsletter's time zone, e.g. "2026-W48"."""
    year, week, _ = moment.astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


#: What phones show of a subject: the builder writes within it, and lint warns beyond it.
SUBJECT_CHARS = 60
#: The sizes of an issue's text columns (``models.Issue``): the editor's limits, and what the build's own words
#: stay within.
TEXT_LIMITS = {"subject": 300, "preheader": 300, "intro": 5000}


def default_subject(titles: list[str]) -> str:
    """The first title, and how many more: within what phones show (SUBJECT_CHARS), so the build's
    own words never draw lint's warning; a long title is cut at a word, with an ellipsis."""
    if not titles:
        return "This week's verdicts"
    rest = len(titles) - 1
    more = f" + {rest} more" if rest else ""  # short, so that a usual title fits whole
    return _cut(titles[0], SUBJECT_CHARS - len(more)) + more


def _cut(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    head = text[: room - 1]
    word = head.rsplit(" ", 1)[0] if " " in head[room // 2 :] else head  # a word boundary in the second half
    return word.rstrip(" ,;:-") + "…"


def default_preheader(titles: list[str]) -> str:
    if len(titles) == 1:
        return "The panel's verdict, the reviewer split and the community vote."
    # The subject names the first; counting it here too ("5 new verdicts:" then four names) read as a miscount.
    # Long titles: as many as fit, then how many more (PostgreSQL refuses a longer preheader; SQLite kept it).
    rest, lead = titles[1:], "Also this week: "
    for shown in range(len(rest), 0, -1):
        text = lead + "; ".join(rest[:shown]) + _and_more(len(rest) - shown)
        if len(text) <= TEXT_LIMITS["preheader"]:
            return text
    room = TEXT_LIMITS["preheader"] - len(lead) - len(_and_more(len(rest) - 1))
    return lead + rest[0][: room - 1] + "…" + _and_more(len(rest) - 1)


def _and_more(count: int) -> str:
    return f"; and {count} more" if count else ""


def default_intro(count: int) -> str:
    noun = "comparison" if count == 1 else "comparisons"
    return (
        f"This week our panel put {count} new {noun} to the test. For each tool you get the panel's "
        "ship rate, the reviewer split, what the community thinks and the price of entry.\n\n"
        "Read the quotes, then decide what you would ship."
    )


@dataclass(frozen=True)
class BuildResult:
    issue: Issue | None
    created: bool
    message: str


def select_new(session: Session, now: datetime) -> tuple[list[Comparison], datetime]:
    """Comparisons published since the previous issue's cut-off (or the last 7 days), newest first.

    Also those imported after that cut-off though published up to a week before it (they
    missed the previous issue). Never future ones, never ones already in an issue.
    Returns them with the window start.
    """
    previous_cutoff = session.exec(select(func.max(Issue.cutoff)).where(Issue.cutoff <= now)).one()
    since = previous_cutoff if previous_cutoff is not None else now - FIRST_ISSUE_WINDOW
    window = col(Comparison.published_at) > since
    if previous_cutoff is not None:
        window = sa.or_(
            window,
            sa.and_(col(Comparison.imported_at) > since, col(Comparison.published_at) > since - LATE_IMPORT_WINDOW),
        )
    in_an_issue = select(IssueItem.comparison_id)
    query = (
        select(Comparison)
        .where(window, Comparison.published_at <= now)
        .where(col(Comparison.id).not_in(in_an_issue))
        .order_by(col(Comparison.published_at).desc(), col(Comparison.id).desc())
    )
    return list(session.exec(query)), since


def build_issue(session: Session, *, now: datetime, tz: ZoneInfo, max_comparisons: int) -> BuildResult:
    """Make this week's draft, or return the one that exists: one issue per ISO week."""
    week = iso_week(now, tz)
    existing = session.exec(select(Issue).where(Issue.week == week)).first()
    if existing is not None:
        return BuildResult(
            existing, False, f"Issue #{existing.id} for {week} already exists ({existing.status.value})."
        )
    found, since = select_new(session, now)
    if not found:
        return BuildResult(None, False, f"No new comparisons since {since:%Y-%m-%d %H:%M} UTC: no issue for {week}.")
    chosen = found[:max_comparisons]
    titles = [c.title for c in chosen]
    issue = Issue(
        week=week,
        subject=default_subject(titles),
        preheader=default_preheader(titles),
        intro=default_intro(len(chosen)),
        cutoff=now,
        more_count=len(found) - len(chosen),
    )
    try:
        # A savepoint: if another process built this week's issue first, use theirs.
        with savepoint(session):
            session.add(issue)
            session.flush()
            session.add_all(
                IssueItem(issue_id=saved_id(issue), comparison_id=saved_id(c), position=i) for i, c in enumerate(chosen)
            )
            session.flush()
    except sa.exc.IntegrityError:
        existing = session.exec(select(Issue).where(Issue.week == week)).one()
        return BuildResult(
            existing, False, f"Issue #{existing.id} for {week} already exists ({existing.status.value})."
        )
    more = f", {issue.more_count} more on the site" if issue.more_count else ""
    return BuildResult(issue, True, f"Built issue #{issue.id} for {week}: {len(chosen)} comparison(s){more}.")


def get_issue(session: Session, issue_id: int) -> Issue:
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise NotFound(f"issue {issue_id} does not exist: `verdicts issue list` shows the issues")
    return issue


def issue_comparisons(session: Session, issue: Issue) -> list[Comparison]:
    query = (
        select(Comparison)
        .join(IssueItem, col(IssueItem.comparison_id) == Comparison.id)
        .where(IssueItem.issue_id == issue.id)
        .order_by(col(IssueItem.position))
    )
    return list(session.exec(query))


def list_issues(session: Session) -> list[Issue]:
    return list(session.exec(select(Issue).order_by(col(Issue.id).desc())))


def approve(session: Session, issue: Issue) -> Issue:
    """draft → approved. Written only if the row is still a draft: a run that read the draft
    just before another one sent it must not set the issue back (the audience would be frozen again)."""
    if issue.status is IssueStatus.approved:
        return issue
    if issue.status is not IssueStatus.draft:
        raise InvalidState(f"issue {issue.id} is {issue.status.value}; only a draft can be approved")
    session.exec(
        update(Issue)
        .where(col(Issue.id) == issue.id, col(Issue.status) == IssueStatus.draft)
        .values(status=IssueStatus.approved, approved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.refresh(issue)
    return issue


def delivery_counts(session: Session, issue_id: int) -> Counter[str]:
    rows = session.exec(
        select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id).group_by(Delivery.status)
    )
    counts: Counter[str] = Counter({s.value: 0 for s in DeliveryStatus})
    counts.update({DeliveryStatus(status).value: n for status, n in rows})
    return counts


def failure_reasons(session: Session, issue_id: int, limit: int = 5) -> list[tuple[str, str, int]]:
    """(status, reason, how many) of the failed and unknown deliveries, commonest first: what the
    provider said, for the operator to act on."""
    count = func.count().label("n")
    rows = session.exec(
        select(Delivery.status, Delivery.error, count)
        .where(Delivery.issue_id == issue_id, col(Delivery.status).in_([DeliveryStatus.failed, DeliveryStatus.unknown]))
        .group_by(col(Delivery.status), col(Delivery.error))
        .order_by(count.desc())
        .limit(limit)
    ).all()
    return [(DeliveryStatus(status).value, error or "no reason given", n) for status, error, n in rows]
