"""Editors' changes to an issue before it goes out: words, order, and when it is sent.

Only a draft can change; approving locks it (unapprove to edit again), and a scheduled
send is an approval with a time, which cancelling turns back into a draft.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select, update

from pipeline.content.issues import TEXT_LIMITS, default_intro, default_preheader, default_subject, issue_comparisons
from pipeline.content.safe_text import one_line, paragraphs
from pipeline.errors import InvalidInput, InvalidState
from pipeline.store.models import Issue, IssueItem, IssueStatus, utcnow


class StaleEdit(InvalidState):
    """The issue changed after the page asking for this change was opened: nothing was written."""


def _require_draft(issue: Issue) -> None:
    if issue.status in (IssueStatus.sending, IssueStatus.sent, IssueStatus.paused):
        raise InvalidState(f"issue {issue.id} is {issue.status.value}: what readers got cannot change any more")
    if issue.status is not IssueStatus.draft:
        raise InvalidState(f"issue {issue.id} is {issue.status.value} and locked: unapprove it to edit")


def _change(
    session: Session,
    issue: Issue,
    allowed: tuple[IssueStatus, ...],
    revision: int | None,
    action: str,
    **values: object,
) -> None:
    """Write only if the status is still one of ``allowed`` when the row is written, and, given the
    ``revision`` an editor's page showed, only if nobody changed the issue since: that page may be
    minutes old, another editor may have saved, the scheduler may have started the send."""
    current = col(Issue.revision) == revision if revision is not None else sa.true()
    moved = session.exec(
        update(Issue)
        .where(col(Issue.id) == issue.id, col(Issue.status).in_(allowed), current)
        .values(revision=Issue.revision + 1, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        session.rollback()
        session.refresh(issue)
        if issue.status in allowed:
            again = "look it over, then approve again" if action == "approved" else "make your change again"
            raise StaleEdit(
                f"issue {issue.id} was changed (by another editor, or from the command line) after this page was "
                f"opened: nothing was {action}. The page shows it as it is now; {again}"
            )
        raise InvalidState(f"issue {issue.id} is {issue.status.value} now: reload the page")
    session.refresh(issue)


def _retitle(issue: Issue, before: list[str], after: list[str]) -> dict[str, object]:
    """The words the build wrote for the old line-up follow the new one (the subject names the first
    comparison, the preheader the others, the intro their count); words an editor wrote stay theirs."""
    values: dict[str, object] = {}
    for field, words in (("subject", default_subject), ("preheader", default_preheader)):
        if getattr(issue, field) == words(before):
            values[field] = words(after)
    if issue.intro == default_intro(len(before)):
        values["intro"] = default_intro(len(after))
    return values


def edit(
    session: Session,
    issue: Issue,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    intro: str | None = None,
    revision: int | None = None,
) -> Issue:
    """Change the words; each value is checked before any is written."""
    _require_draft(issue)
    changes = {k: v for k, v in {"subject": subject, "preheader": preheader, "intro": intro}.items() if v is not None}
    for field, value in changes.items():
        # The import's checks (content.one_line, content.paragraphs): the words go into the same headers and lines.
        try:
            cleaned = one_line(value.strip()) if field != "intro" else paragraphs(value).strip()
        except ValueError as exc:
            raise InvalidInput(f"issue {issue.id}: the {field} {exc}") from None
        if field == "subject" and not cleaned:
            raise InvalidInput(f"issue {issue.id}: the {field} cannot be empty")
        if len(cleaned) > TEXT_LIMITS[field]:
            raise InvalidInput(
                f"issue {issue.id}: the {field} is {len(cleaned)} characters, over the limit of "
                f"{TEXT_LIMITS[field]}: shorten it"
            )
        changes[field] = cleaned
    _change(session, issue, (IssueStatus.draft,), revision, "saved", **changes)
    return issue


def _items(session: Session, issue: Issue) -> list[IssueItem]:
    return list(session.exec(select(IssueItem).where(IssueItem.issue_id == issue.id).order_by(col(IssueItem.position))))


def _line_up(session: Session, issue: Issue, revision: int | None, action: str) -> tuple[list[IssueItem], list[str]]:
    """Take the issue (still a draft, at the page's revision) before reading its line-up: the items are
    then read and changed by this transaction alone, not by two editors' at once."""
    _require_draft(issue)
    _change(session, issue, (IssueStatus.draft,), revision, action)
    return _items(session, issue), [c.title for c in issue_comparisons(session, issue)]


def _position(items: list[IssueItem], issue: Issue, comparison_id: int) -> int:
    index = next((i for i, it in enumerate(items) if it.comparison_id == comparison_id), None)
    if index is None:
        raise InvalidInput(f"comparison {comparison_id} is not in issue {issue.id}")
    return index


def _relabel(session: Session, issue: Issue, items: list[IssueItem], **values: object) -> None:
    """Positions 1…n for the new line-up, and the issue's words for it, in the transaction that took it."""
    for position, item in enumerate(items, 1):
        item.position = position
        session.add(item)
    if values:
        session.exec(
            update(Issue).where(col(Issue.id) == issue.id).values(**values).execution_options(synchronize_session=False)
        )
    session.flush()
    session.refresh(issue)


def move(session: Session, issue: Issue, comparison_id: int, offset: int, revision: int | None = None) -> None:
    """Move one comparison up (-1) or down (+1); positions stay 1…n."""
    items, titles = _line_up(session, issue, revision, "moved")
    index = _position(items, issue, comparison_id)
    target = min(max(index + offset, 0), len(items) - 1)
    items.insert(target, items.pop(index))
    reordered = titles.copy()
    reordered.insert(target, reordered.pop(index))
    _relabel(session, issue, items, **_retitle(issue, titles, reordered))


def drop(session: Session, issue: Issue, comparison_id: int, revision: int | None = None) -> None:
    """Take a comparison out; it becomes free for a later issue, and counts among those "more on the site"."""
    items, titles = _line_up(session, issue, revision, "dropped")
    if len(items) <= 1:
        raise InvalidState("an issue needs at least one comparison")
    index = _position(items, issue, comparison_id)
    session.delete(items.pop(index))
    _relabel(
        session,
        issue,
        items,
        more_count=Issue.more_count + 1,
        **_retitle(issue, titles, titles[:index] + titles[index + 1 :]),
    )


def schedule(session: Session, issue: Issue, at: datetime | None, revision: int | None = None) -> Issue:
    """Approve to go out at ``at`` (None: at the scheduler's next pass)."""
    if at is not None and at <= utcnow():
        raise InvalidInput("the send time must be in the future")
    if issue.status not in (IssueStatus.draft, IssueStatus.approved):
        raise InvalidState(
            f"issue {issue.id} is {issue.status.value}; only a draft or an approved issue can be scheduled"
        )
    _change(
        session,
        issue,
        (IssueStatus.draft, IssueStatus.approved),
        revision,
        "approved",
        status=IssueStatus.approved,
        approved_at=issue.approved_at or utcnow(),
        scheduled_for=at,
    )
    return issue


def unapprove(session: Session, issue: Issue) -> Issue:
    """Back to a draft (also cancels a scheduled send); impossible once sending has started."""
    if issue.status is IssueStatus.draft:
        return issue
    if issue.status is not IssueStatus.approved:
        raise InvalidState(f"issue {issue.id} is {issue.status.value}: it can no longer be stopped")
    _change(
        session,
        issue,
        (IssueStatus.approved,),
        None,
        "unapproved",
        status=IssueStatus.draft,
        approved_at=None,
        scheduled_for=None,
    )
    return issue


def send_now(session: Session, issue: Issue, revision: int | None = None) -> Issue:
    """An approved issue goes at the scheduler's next look (its time is now: never "missed" for being late)."""
    if issue.status is not IssueStatus.approved:
        raise InvalidState(f"issue {issue.id} is {issue.status.value}: only an approved issue can be sent now")
    _change(session, issue, (IssueStatus.approved,), revision, "scheduled", scheduled_for=utcnow())
    return issue
