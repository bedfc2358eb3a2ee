"""Editors' changes to an issue before it goes out: words, order, and when it is sent.

Only a draft can change; approving locks it (unapprove to edit again), and a scheduled
send is an approval with a time, which cancelling turns back into a draft.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select, update

from pipeline.config import Settings
from pipeline.errors import InvalidInput, InvalidState, RenderError
from pipeline.lint import Lint
from pipeline.models import Issue, IssueItem, IssueStatus, utcnow

LIMITS = {"subject": 300, "preheader": 300, "intro": 5000}


def _require_draft(issue: Issue) -> None:
    if issue.status in (IssueStatus.sending, IssueStatus.sent, IssueStatus.paused):
        raise InvalidState(f"issue {issue.id} is {issue.status.value}: what readers got cannot change any more")
    if issue.status is not IssueStatus.draft:
        raise InvalidState(f"issue {issue.id} is {issue.status.value} and locked: unapprove it to edit")


def _change(session: Session, issue: Issue, allowed: tuple[IssueStatus, ...], **values: object) -> None:
    """Write only if the status is still one of ``allowed`` when the row is written: an editor's
    page may be minutes old, and the scheduler may have approved or started the send since."""
    moved = session.exec(
        # With nothing to change, a no-op write still takes the row, so the check and the write are one.
        update(Issue).where(Issue.id == issue.id, col(Issue.status).in_(allowed)).values(**(values or {"status": Issue.status}))
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        session.rollback()
        session.refresh(issue)
        raise InvalidState(f"issue {issue.id} is {issue.status.value} now: reload the page")
    session.refresh(issue)


def edit(session: Session, issue: Issue, *, subject: str | None = None, preheader: str | None = None, intro: str | None = None) -> Issue:
    """Change the words; each value is checked before any is written."""
    _require_draft(issue)
    changes = {k: v for k, v in {"subject": subject, "preheader": preheader, "intro": intro}.items() if v is not None}
    for field, value in changes.items():
        single_line = field != "intro"
        cleaned = value.strip() if single_line else value.replace("\r\n", "\n").strip()
        if field == "subject" and not cleaned:
            raise InvalidInput(f"the {field} cannot be empty")
        if single_line and any(ord(ch) < 32 for ch in cleaned):
            raise InvalidInput(f"the {field} must be one line (no line breaks or control characters)")
        if len(cleaned) > LIMITS[field]:
            raise InvalidInput(f"the {field} is {len(cleaned)} characters; the limit is {LIMITS[field]}")
        changes[field] = cleaned
    _change(session, issue, (IssueStatus.draft,), **changes)
    return issue


def _items(session: Session, issue: Issue) -> list[IssueItem]:
    return list(session.exec(select(IssueItem).where(IssueItem.issue_id == issue.id).order_by(col(IssueItem.position))))


def move(session: Session, issue: Issue, comparison_id: int, offset: int) -> None:
    """Move one comparison up (-1) or down (+1); positions stay 1…n."""
    _require_draft(issue)
    items = _items(session, issue)
    index = next((i for i, it in enumerate(items) if it.comparison_id == comparison_id), None)
    if index is None:
        raise InvalidInput(f"comparison {comparison_id} is not in issue {issue.id}")
    target = min(max(index + offset, 0), len(items) - 1)
    items.insert(target, items.pop(index))
    for position, item in enumerate(items, 1):
        item.position = position
        session.add(item)
    _change(session, issue, (IssueStatus.draft,))  # still a draft as this commits, or nothing changes


def drop(session: Session, issue: Issue, comparison_id: int) -> None:
    """Take a comparison out; it becomes free for a later issue."""
    _require_draft(issue)
    items = _items(session, issue)
    if len(items) <= 1:
        raise InvalidState("an issue needs at least one comparison")
    item = next((it for it in items if it.comparison_id == comparison_id), None)
    if item is None:
        raise InvalidInput(f"comparison {comparison_id} is not in issue {issue.id}")
    session.delete(item)
    for position, it in enumerate([i for i in items if i is not item], 1):
        it.position = position
        session.add(it)
    _change(session, issue, (IssueStatus.draft,))


def schedule(session: Session, issue: Issue, at: datetime | None) -> Issue:
    """Approve to go out at ``at`` (None: at the scheduler's next pass)."""
    if at is not None and at <= utcnow():
        raise InvalidInput("the send time must be in the future")
    if issue.status not in (IssueStatus.draft, IssueStatus.approved):
        raise InvalidState(f"issue {issue.id} is {issue.status.value}; only a draft or an approved issue can be scheduled")
    _change(session, issue, (IssueStatus.draft, IssueStatus.approved), status=IssueStatus.approved,
            approved_at=issue.approved_at or utcnow(), scheduled_for=at)
    return issue


def approve(session: Session, issue: Issue, settings: Settings, at: datetime | None = None) -> Lint:
    """Lint, then approve (and schedule): an issue that would hurt readers is never approved.
    Returns the lint, whose warnings the caller shows."""
    from pipeline.render import render_issue  # rendering needs the issue's content; editing does not otherwise

    lint = render_issue(session, issue, settings).lint
    if lint.errors:
        raise RenderError(f"issue {issue.id} cannot be approved: " + "; ".join(lint.errors))
    schedule(session, issue, at)
    return lint


def unapprove(session: Session, issue: Issue) -> Issue:
    """Back to a draft (also cancels a scheduled send); impossible once sending has started."""
    if issue.status is IssueStatus.draft:
        return issue
    if issue.status is not IssueStatus.approved:
        raise InvalidState(f"issue {issue.id} is {issue.status.value}: it can no longer be stopped")
    _change(session, issue, (IssueStatus.approved,), status=IssueStatus.draft, approved_at=None, scheduled_for=None)
    return issue
