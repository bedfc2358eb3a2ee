"""The issue page's newsroom actions: comments (anyone logged in), and for admins the send itself: change the time
of an approved issue, send it now, cancel it (back to a draft before it starts; once it is sending, stop it after
the batch in flight, as a paused send that `verdicts issue send` resumes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from pipeline.config import Settings
from pipeline.content import editing
from pipeline.delivery.ledger import pause
from pipeline.errors import InvalidInput, InvalidState
from pipeline.ops import signoff
from pipeline.store.models import Issue, IssueStatus
from pipeline.web.auth import AsAdmin, Editor
from pipeline.web.editor import NO_REVISION, Id, Revision, _act
from pipeline.web.pages import actor_of

router = APIRouter(prefix="/editor/issues/{issue_id}")


@router.post("/comment")
def comment(
    request: Request, issue_id: Id, csrf: Editor, text: Annotated[str, Form(max_length=signoff.MAX_COMMENT * 2)] = ""
) -> Response:
    author = actor_of(request)
    return _act(
        request,
        issue_id,
        csrf,
        "commented",
        lambda s, i, _: signoff.add_comment(s, i, author, text),
        audit_as="issue.comment",
        comment=text.strip()[:200],  # a comment changes no issue field: its words make the entry
    )


def _moment(at: str, settings: Settings) -> datetime:
    """The form's local time is in the newsletter's zone."""
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise InvalidInput(f"the send time {at!r} is not a date and time: pick one in the form") from None
    return when if when.tzinfo else when.replace(tzinfo=settings.tz)


@router.post("/schedule")
def schedule(
    request: Request, issue_id: Id, csrf: AsAdmin, at: Annotated[str, Form()] = "", revision: Revision = NO_REVISION
) -> Response:
    def change(session: Session, issue: Issue, settings: Settings) -> None:
        if issue.status is not IssueStatus.approved:
            raise InvalidState(f"issue {issue.id} is {issue.status.value}: only an approved issue gets a send time")
        editing.schedule(session, issue, _moment(at, settings), revision)

    return _act(request, issue_id, csrf, "rescheduled", change, audit_as="issue.schedule")


@router.post("/send-now")
def send_now(request: Request, issue_id: Id, csrf: AsAdmin, revision: Revision = NO_REVISION) -> Response:
    return _act(
        request,
        issue_id,
        csrf,
        "sending-now",
        lambda s, i, _: editing.send_now(s, i, revision),
        audit_as="issue.send_now",
    )


@router.post("/cancel")
def cancel(request: Request, issue_id: Id, csrf: AsAdmin) -> Response:
    reason = f"stopped in the editor by {actor_of(request)}"

    def stop(session: Session, issue: Issue, _: Settings) -> None:
        if issue.status is IssueStatus.approved:
            editing.unapprove(session, issue)
        elif issue.status is not IssueStatus.sending or not pause(session, issue, reason):
            raise InvalidState(f"issue {issue.id} is {issue.status.value}: there is no send to cancel or stop")

    return _act(request, issue_id, csrf, "cancelled", stop, audit_as="issue.cancel")
