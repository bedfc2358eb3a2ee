"""Editor pages: the issues, one issue's preview (600/375 px, dark mode, any sample reader),
lint, edits, reorder/drop, test send, approve/schedule/unapprove, and the stats after sending.

Every route depends on ``Editor`` (a valid session; the CSRF token on every POST) or on the role it needs
(``AsEditor``, ``AsAdmin``). A POST that fails answers the issue page with the error and changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session, col, func, select

from pipeline.config import Settings
from pipeline.content import editing, issues
from pipeline.content.audited import audited, described, record_build, unapproval
from pipeline.content.lineups import Lineups
from pipeline.content.votes import community, votes_from_issue
from pipeline.delivery.events import event_counts
from pipeline.delivery.send import send_test_copies
from pipeline.email.render import Recipient, personalise, render_issue
from pipeline.errors import VerdictsError
from pipeline.ops import heartbeat, signoff
from pipeline.ops.heartbeat import SchedulerState
from pipeline.ops.weekly import missed
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import Heartbeat, Issue, IssueItem, IssueStatus, saved_id, utcnow
from pipeline.web.auth import AsAdmin, AsEditor, Editor, viewer_of
from pipeline.web.pages import EMAIL_CSP, MAX_ID, actor_of, message, page, request_settings
from subscribers.interests import MAX_INTERESTS, clean_interests
from subscribers.models import Subscriber, SubscriberStatus

router = APIRouter(prefix="/editor")
#: What a form without the issue's revision stands for (a page opened before revisions existed): matches none,
#: so it is stale.
NO_REVISION = -1
#: Ids as the URL and forms give them: bounded, so a huge one is a 400 that names it, not an overflow in the driver.
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Revision = Annotated[int, Form(ge=NO_REVISION, le=MAX_ID)]
Reader = Annotated[int | None, Query(ge=1, le=MAX_ID)]
#: The issue page's history: its newest entries (`verdicts audit export --issue ID` has them all).
HISTORY = 50

#: Mail clients that force a dark theme invert light designs roughly like this.
DARK_MODE = (
    "<style>html{background:#fff;filter:invert(1) hue-rotate(180deg)}img{filter:invert(1) hue-rotate(180deg)}</style>"
)
DONE = {
    "edited": "Saved. The preview below shows the change.",
    "moved": "Order changed.",
    "dropped": "Comparison dropped; it can go in a later issue.",
    "unapproved": "Back to draft: you can edit it again.",
    "tested": "Test copy sent.",
    "built": "This week's draft is ready.",
    "exists": "This week's issue already exists: here it is.",
    "signed": "Your approval is recorded: the Sign-off section says what is still needed.",
    "commented": "Comment posted.",
    "rescheduled": "The send time is changed.",
    "sending-now": "It goes at the scheduler's next look.",
    "cancelled": "Cancelled: a scheduled issue is a draft again; a send in progress stops after the batch in flight.",
}


def _flashes(settings: Settings) -> URLSafeTimedSerializer:
    """Signs an error carried through a redirect: nobody else can make the editor's page say something."""
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt="editor-flash")


def _flashed(settings: Settings, signed: str) -> str | None:
    try:
        return str(_flashes(settings).loads(signed, max_age=3600)) if signed else None
    except BadSignature:
        return None  # forged, or an old link: the page without the message


def sending_note(issue: Issue, scheduler: SchedulerState, settings: Settings) -> tuple[bool, str] | None:
    """What sends an approved issue, and when; (False, …) when nothing will: "the scheduler sends it" is said
    only while a scheduler beats, else the editor learns that none runs, and what an operator does about it."""
    if issue.status is not IssueStatus.approved:
        return None
    tz, now = settings.tz, scheduler.now
    word = "Scheduled" if issue.scheduled_for else "Approved"
    send_now = f"sends it now with `verdicts issue send {issue.id}`"
    if missed(issue, now, settings):
        due = (issue.scheduled_for or issue.approved_at or now).astimezone(tz)
        return False, (
            f"{word} for {due:%Y-%m-%d %H:%M} ({settings.timezone}), a moment the scheduler missed (it was "
            f"down): it will not send it by itself, late. An operator {send_now}; or unapprove it."
        )
    if scheduler.running and scheduler.record is not None:
        at = _send_time(issue, scheduler.record, now, settings).astimezone(tz)
        return True, f"{word}: the scheduler sends it at {at:%Y-%m-%d %H:%M} ({settings.timezone})."
    if scheduler.record is None:
        seen = "no scheduler has ever run for this site"
    else:
        last = scheduler.record.beat_at.astimezone(tz)
        seen = f"the scheduler last ran at {last:%Y-%m-%d %H:%M} ({settings.timezone})"
    return False, (
        f"{word}, but no scheduler is running ({seen}): nothing sends it until an operator starts "
        f"`verdicts scheduler`, or {send_now}."
    )


def _send_time(issue: Issue, record: Heartbeat, now: datetime, settings: Settings) -> datetime:
    """The scheduler's first look for approved issues at or after the issue's time (now, unless scheduled)."""
    poll, step = record.next_poll_at or now, timedelta(minutes=settings.send_poll_minutes)
    target = max(issue.scheduled_for or now, now)
    if poll < target:
        poll += step * math.ceil((target - poll) / step)
    return poll


def _sample(session: Session, subscriber_id: int | None) -> Recipient:
    """The chosen reader's name and address, with links that act for nobody: an editor
    clicking "unsubscribe" in the preview must not unsubscribe (or erase) that reader."""
    row = session.get(Subscriber, subscriber_id) if subscriber_id else None
    return Recipient(0, row.email, row.name) if row else Recipient(0, "preview@example.com", "Reader")


@router.get("")
def issues_list(request: Request, csrf: Editor, done: str = "", error: str = "") -> Response:
    """``error``: signed by the POST that failed and redirected here, so a reload does not post it again."""
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        sizes = dict(
            session.exec(select(col(IssueItem.issue_id), func.count()).group_by(col(IssueItem.issue_id))).all()
        )
        ids = [(i, saved_id(i)) for i in issues.list_issues(session)]
        rows = [(i, sizes.get(id_, 0), issues.delivery_counts(session, id_)) for i, id_ in ids]
    return page(
        request,
        "web/editor/issues.html.j2",
        csrf=csrf,
        rows=rows,
        notice=DONE.get(done),
        error=_flashed(settings, error),
    )


@router.post("/build")
def build(request: Request, csrf: AsEditor) -> Response:
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        result = issues.build_issue(session, now=utcnow(), tz=settings.tz, max_comparisons=settings.max_comparisons)
        record_build(session, actor_of(request), result)
        issue_id = result.issue.id if result.issue else None
    if issue_id is None:  # nothing built, nothing to repeat; still a redirect, so a reload asks nothing
        return RedirectResponse(f"/editor?error={_flashes(settings).dumps(result.message)}", status_code=303)
    return RedirectResponse(
        f"/editor/issues/{issue_id}?done={'built' if result.created else 'exists'}", status_code=303
    )


def _issue_page(
    request: Request,
    issue_id: int,
    csrf: str,
    *,
    width: int = 600,
    dark: bool = False,
    subscriber: int | None = None,
    done: str = "",
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str | None] | None = None,
    stale: bool = False,
) -> Response:
    """``typed``: what the editor typed into the words form. Refused as invalid, it stays in the form to be
    fixed; refused as ``stale``, the form shows the words saved since, and what was typed is shown beside
    them to copy from: saved again as it stood, it would quietly undo the other editor's change."""
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        rendered = render_issue(session, issue, settings)
        sample = _sample(session, subscriber)
        copy = personalise(rendered, sample, settings)
        readers = session.exec(
            select(Subscriber)
            .where(Subscriber.status == SubscriberStatus.confirmed)
            .order_by(col(Subscriber.id))
            .limit(100)
        ).all()
        comparisons = issues.issue_comparisons(session, issue)
        from_issue = votes_from_issue(session, issue_id)
        context = {
            "history_limit": HISTORY,
            "history": [
                (e.at.astimezone(settings.tz), e, described(e))
                for e in audit.entries(session, issue_id, newest=HISTORY)
            ],
            "signoff": signoff.signoff(session, issue, settings),
            "comments": signoff.comments(session, issue_id),
            "comparisons": comparisons,
            "lint": rendered.lint,
            "text": copy.text,
            "counts": issues.delivery_counts(session, issue_id),
            "events": event_counts(session, issue_id),
            "readers": [(r.id, r.email) for r in readers],
            "sending": sending_note(issue, heartbeat.state(session), settings),
            "community": [
                (
                    c.title,
                    [
                        (t.name, split, from_issue.get(saved_id(t), 0))
                        for t, split in zip(c.tools, community(session, c).values(), strict=True)
                    ],
                )
                for c in comparisons
            ],
        }
    return page(
        request,
        "web/editor/issue.html.j2",
        status_code,
        issue=issue,
        csrf=csrf,
        width=375 if width == 375 else 600,
        dark=dark,
        sample=sample,
        selected=subscriber if sample.email != "preview@example.com" else None,
        sender=f"{settings.from_name} <{settings.from_email}>",
        editor_emails=settings.editor_addresses,
        locked=issue.status is not IssueStatus.draft,
        notice=DONE.get(done),
        error=error,
        tz=settings.timezone,
        words={
            f: typed[f] if typed and not stale and typed.get(f) is not None else getattr(issue, f)
            for f in ("subject", "preheader", "intro")
        },
        # Only what differs from the saved words: the rest of the form was as the page showed it.
        unsaved={
            f: v
            for f, v in (typed or {}).items()
            if stale and v is not None and v.replace("\r\n", "\n").strip() != getattr(issue, f)
        },
        scheduled=issue.scheduled_for.astimezone(settings.tz) if issue.scheduled_for else None,
        **context,
    )


@router.get("/issues/{issue_id}")
def issue_page(
    request: Request,
    issue_id: Id,
    csrf: Editor,
    width: int = 600,
    dark: bool = False,
    subscriber: Reader = None,
    done: str = "",
) -> Response:
    return _issue_page(request, issue_id, csrf, width=width, dark=dark, subscriber=subscriber, done=done)


@router.get("/issues/{issue_id}/preview")
def preview(
    request: Request,
    issue_id: Id,
    _: Editor,
    dark: bool = False,
    subscriber: Reader = None,
    interests: Annotated[list[str], Query(max_length=MAX_INTERESTS)] = [],  # noqa: B006 (FastAPI copies it)
    only: bool = False,
) -> Response:
    """The email itself, for the iframe: exactly the reader's HTML (plus a dark-mode filter when asked), in the
    line-up a reader with ``interests`` (and "only my interests") gets."""
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        try:
            picked = clean_interests(session, interests)
        except VerdictsError as exc:
            return message(
                request, "That line-up did not work", f"{exc}: tick only the categories the form offers", 422
            )
        lineup = Lineups(issues.issue_comparisons(session, issue)).of(picked, only)
        rendered = render_issue(session, issue, settings, lineup=lineup)
        html = personalise(rendered, _sample(session, subscriber), settings).html
    if dark:
        html = re.sub(r"</head>", DARK_MODE + "</head>", html, count=1)
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_CSP})


def _act(
    request: Request,
    issue_id: int,
    csrf: str,
    done: str,
    action: Callable[[Session, Issue, Settings], object],
    typed: dict[str, str | None] | None = None,
    *,
    audit_as: str | Callable[[Issue], str],
    content: bool = False,
    **detail: object,
) -> Response:
    """Run one change and its audit entry (``audit_as``, with ``detail``) in one transaction; on a refusal, the
    page says why and nothing changed. ``content``: a change to the words or the line-up, whose author the
    two-person rule remembers."""
    settings = request_settings(request)
    try:
        with session_scope(settings.database_url) as session:
            issue = issues.get_issue(session, issue_id)
            name = audit_as if isinstance(audit_as, str) else audit_as(issue)
            with audited(session, actor_of(request), name, issue, **detail):
                action(session, issue, settings)
            if content:
                signoff.note_change(session, issue, actor_of(request))
    except VerdictsError as exc:
        stale = isinstance(exc, editing.StaleEdit)
        return _issue_page(
            request, issue_id, csrf, error=str(exc), status_code=409 if stale else 422, typed=typed, stale=stale
        )
    return RedirectResponse(f"/editor/issues/{issue_id}?done={done}", status_code=303)


@router.post("/issues/{issue_id}/edit")
def edit(
    request: Request,
    issue_id: Id,
    csrf: AsEditor,
    subject: Annotated[str, Form()] = "",
    preheader: Annotated[str | None, Form()] = None,
    intro: Annotated[str | None, Form()] = None,
    revision: Revision = NO_REVISION,
) -> Response:
    typed = {"subject": subject, "preheader": preheader, "intro": intro}
    return _act(
        request,
        issue_id,
        csrf,
        "edited",
        lambda s, i, _: editing.edit(s, i, **typed, revision=revision),
        typed,
        audit_as="issue.edit",
        content=True,
    )


@router.post("/issues/{issue_id}/items/{comparison_id}/{action}")
def item(
    request: Request, issue_id: Id, comparison_id: Id, action: str, csrf: AsEditor, revision: Revision = NO_REVISION
) -> Response:
    if action == "drop":
        return _act(
            request,
            issue_id,
            csrf,
            "dropped",
            lambda s, i, _: editing.drop(s, i, comparison_id, revision),
            audit_as="issue.drop",
            content=True,
        )
    offset = {"up": -1, "down": 1}.get(action)
    if offset is None:
        return _issue_page(request, issue_id, csrf, error=f"unknown action {action!r}", status_code=404)
    return _act(
        request,
        issue_id,
        csrf,
        "moved",
        lambda s, i, _: editing.move(s, i, comparison_id, offset, revision),
        audit_as="issue.reorder",
        content=True,
    )


@router.post("/issues/{issue_id}/approve")
def approve(
    request: Request, issue_id: Id, csrf: AsAdmin, at: Annotated[str, Form()] = "", revision: Revision = NO_REVISION
) -> Response:
    settings = request_settings(request)
    try:
        when = datetime.fromisoformat(at) if at else None
        if when is not None and when.tzinfo is None:  # the form's local time is in the newsletter's zone
            when = when.replace(tzinfo=settings.tz)
    except ValueError:
        return _issue_page(request, issue_id, csrf, error=f"{at!r} is not a date and time", status_code=422)
    account = viewer_of(request).account_id
    return _act(
        request,
        issue_id,
        csrf,
        "signed" if settings.approvals_required > 1 else "scheduled" if when else "approved",
        lambda s, i, st: signoff.approve_as(s, i, st, actor_of(request), account, when, revision),
        audit_as="issue.schedule" if when else "issue.approve",
        approvals_required=settings.approvals_required,  # a detail: the first of two approvals is recorded too
    )


@router.post("/issues/{issue_id}/unapprove")
def unapprove(request: Request, issue_id: Id, csrf: AsAdmin) -> Response:
    return _act(request, issue_id, csrf, "unapproved", lambda s, i, _: editing.unapprove(s, i), audit_as=unapproval)


@router.post("/issues/{issue_id}/test-send")
async def test_send(request: Request, issue_id: Id, csrf: AsEditor) -> Response:
    form = await request.form()
    settings = request_settings(request)
    chosen = [str(a) for a in form.getlist("to")]
    if why := refused_test_addresses(chosen, settings):
        return _issue_page(request, issue_id, csrf, error=why, status_code=422)
    return _act(
        request,
        issue_id,
        csrf,
        "tested",
        lambda s, i, st: send_test(s, i, st, chosen),
        audit_as="issue.test_send",
        to=chosen,
    )


def refused_test_addresses(chosen: list[str], settings: Settings) -> str | None:
    """Why a test copy may not go to ``chosen`` (test copies go to editors only), or None."""
    unknown = [a for a in chosen if a not in settings.editor_addresses]
    if not chosen:
        return "choose at least one editor address"
    if unknown:
        return f"not an editor address: {', '.join(unknown)} (see VERDICTS_EDITOR_EMAILS)"
    return None


def send_test(session: Session, issue: Issue, settings: Settings, addresses: list[str]) -> None:
    failed = [f"{a}: {o.error}" for a, o in send_test_copies(session, issue, settings, addresses) if not o.ok]
    if failed:
        raise VerdictsError("the test copy was not sent: " + "; ".join(failed))
