"""Who signs an issue off: approvals recorded per revision (a change leaves them behind), the two-person rule of
``APPROVALS_REQUIRED`` (from 2: never the person who made the last change, and each approver counts once), and
the comments editors leave on an issue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select, update

from pipeline.config import Settings
from pipeline.content.editing import StaleEdit
from pipeline.email import approval
from pipeline.email.render import render_issue
from pipeline.errors import InvalidInput, InvalidState, RenderError
from pipeline.store.models import Issue, IssueApproval, IssueComment, IssueStatus, saved_id

MAX_COMMENT = 4000


@dataclass(frozen=True)
class SignOff:
    """What the issue page shows: who approved the revision that counts, and what is still needed."""

    required: int
    approvers: list[str]
    changed_by: str | None

    @property
    def missing(self) -> int:
        return max(self.required - len(self.approvers), 0)

    def refusal(self, actor: str) -> str | None:
        """Why ``actor`` may not approve now, or None."""
        if self.required > 1 and actor == self.changed_by:
            return (
                f"you made the last change to this issue, and {self.required} approvals are required: "
                "another admin must approve it"
            )
        if actor in self.approvers:
            return f"you approved this version already: it needs {self.missing} more from someone else"
        return None


def signoff(session: Session, issue: Issue, settings: Settings) -> SignOff:
    """A draft's approvals are those of its current revision; once approved, those that approved it (the
    approving itself moved the revision on)."""
    issue_id = saved_id(issue)
    revision = issue.revision
    if issue.status is not IssueStatus.draft:
        newest = session.exec(select(func.max(IssueApproval.revision)).where(IssueApproval.issue_id == issue_id)).one()
        revision = newest if newest is not None else revision
    approvers = session.exec(
        select(col(IssueApproval.actor))
        .where(IssueApproval.issue_id == issue_id, IssueApproval.revision == revision)
        .order_by(col(IssueApproval.at))
    ).all()
    return SignOff(settings.approvals_required, list(approvers), issue.changed_by)


def approve_as(
    session: Session,
    issue: Issue,
    settings: Settings,
    actor: str,
    account_id: int | None,
    at: datetime | None = None,
    revision: int | None = None,
) -> bool:
    """Record ``actor``'s approval of the revision the page showed; the last one needed approves (and schedules)
    the issue. True when it is now approved."""
    if revision is not None and revision != issue.revision:
        raise StaleEdit(
            f"issue {issue.id} was changed after this page was opened: nothing was approved. The page shows it as "
            "it is now; look it over, then approve again"
        )
    if issue.status is not IssueStatus.draft:
        raise InvalidState(f"issue {issue.id} is {issue.status.value}: only a draft is approved")
    state = signoff(session, issue, settings)
    if why := state.refusal(actor):
        raise InvalidState(why)
    approved_revision = issue.revision
    if state.missing <= 1:
        approval.approve(session, issue, settings, at, approved_revision)
    else:
        lint = render_issue(session, issue, settings).lint
        if lint.errors:
            raise RenderError(f"issue {issue.id} cannot be approved: " + "; ".join(lint.errors))
    session.add(IssueApproval(issue_id=saved_id(issue), revision=approved_revision, actor=actor, account_id=account_id))
    session.flush()
    return state.missing <= 1


def note_change(session: Session, issue: Issue, actor: str) -> None:
    """Who made the last change, for the two-person rule."""
    session.exec(update(Issue).where(col(Issue.id) == issue.id).values(changed_by=actor))
    session.flush()


def add_comment(session: Session, issue: Issue, author: str, text: str) -> IssueComment:
    cleaned = text.replace("\r\n", "\n").strip()
    if not cleaned:
        raise InvalidInput("the comment is empty: write something, then post it")
    if len(cleaned) > MAX_COMMENT:
        raise InvalidInput(f"the comment has {len(cleaned)} characters: shorten it to {MAX_COMMENT}")
    comment = IssueComment(issue_id=saved_id(issue), revision=issue.revision, author=author, text=cleaned)
    session.add(comment)
    session.flush()
    return comment


def comments(session: Session, issue_id: int) -> list[IssueComment]:
    return list(
        session.exec(select(IssueComment).where(IssueComment.issue_id == issue_id).order_by(col(IssueComment.at)))
    )
