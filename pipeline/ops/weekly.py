"""The weekly job, as the scheduler and `verdicts run-weekly` run it: build, then send when allowed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pipeline.config import Settings
from pipeline.content.audited import audited, record_build
from pipeline.content.issues import approve, build_issue, list_issues
from pipeline.delivery.providers import get_fallback, get_provider
from pipeline.delivery.send import ProgressFn, send_issue
from pipeline.delivery.stop import STOP
from pipeline.delivery.summary import SendSummary
from pipeline.store.audit import SCHEDULER
from pipeline.store.db import require_schema, session_scope
from pipeline.store.models import Issue, IssueStatus, saved_id, utcnow
from subscribers.privacy import expire_evidence, purge_pending

log = logging.getLogger("verdicts.weekly")


@dataclass(frozen=True)
class WeeklyResult:
    issue_id: int | None
    message: str
    summary: SendSummary | None = None


def due(issue: Issue, now: datetime) -> bool:
    """Sending (resume it), or approved with no send time or one that has come. A paused send
    waits for an operator (`verdicts issue send`), who knows the provider is back."""
    if issue.status is IssueStatus.sending:
        return True
    return issue.status is IssueStatus.approved and (issue.scheduled_for is None or issue.scheduled_for <= now)


def missed(issue: Issue, now: datetime, settings: Settings) -> bool:
    """Approved for a moment the scheduler missed by more than its grace (it was down): sending it
    days late would surprise readers and editors, so it waits for someone to send it by hand."""
    due_at = issue.scheduled_for or issue.approved_at
    # A poll may come one interval after the due moment without anything having been missed.
    window = settings.misfire_grace_seconds + settings.send_poll_minutes * 60
    return issue.status is IssueStatus.approved and due_at is not None and (now - due_at).total_seconds() > window


def run_weekly(
    settings: Settings, now: datetime, on_progress: ProgressFn | None = None, *, actor: str = SCHEDULER
) -> WeeklyResult:
    """``actor``: whom the audit trail names for the build, the approval and the send (someone who ran
    `verdicts run-weekly` by hand, or the scheduler)."""
    require_schema(settings.database_url)
    settings.require_real_secret()
    with session_scope(settings.database_url) as session:
        # Housekeeping the consent rules ask for, once a week with the issue.
        purge_pending(session, settings.pending_days)
        expire_evidence(session, settings.evidence_retention_days)
        built = build_issue(session, now=now, tz=settings.tz, max_comparisons=settings.max_comparisons)
        record_build(session, actor, built)
        issue = built.issue
        if issue is None:
            return WeeklyResult(None, built.message)
        if issue.status is IssueStatus.draft:
            if settings.require_approval:
                return WeeklyResult(
                    issue.id, f"{built.message} Waiting for an editor: `verdicts issue approve {issue.id}`."
                )
            with audited(session, actor, "issue.approve", issue):
                approve(session, issue)  # another scheduler or run may have got further meanwhile: then this is theirs
        if issue.status is IssueStatus.sent:  # perhaps by another run since this one built it: say so as it is now
            return WeeklyResult(issue.id, f"Issue #{issue.id} for {issue.week} already exists (sent). Nothing to send.")
        if not due(issue, now):
            return WeeklyResult(issue.id, f"{built.message} Scheduled for {issue.scheduled_for:%Y-%m-%d %H:%M} UTC.")
    provider = get_provider(settings)
    fallback = get_fallback(settings)
    try:
        summary = send_issue(settings, saved_id(issue), provider, on_progress, fallback, actor=actor)
    finally:
        provider.close()
        if fallback:
            fallback.close()
    return WeeklyResult(issue.id, built.message, summary)


def missed_approved(settings: Settings) -> list[Issue]:
    """The approved issues the scheduler will not send because it missed their time (see `missed`)."""
    require_schema(settings.database_url)
    now = utcnow()
    with session_scope(settings.database_url) as session:
        return [i for i in list_issues(session) if missed(i, now, settings)]


def send_approved(settings: Settings) -> list[SendSummary]:
    """Send every approved issue that is due (not missed), and resume any interrupted send."""
    require_schema(settings.database_url)
    now = utcnow()
    with session_scope(settings.database_url) as session:
        listed = list_issues(session)
        ready = [i for i in listed if due(i, now) and not missed(i, now, settings)]
    for issue in listed:
        if issue.status is IssueStatus.paused:
            log.warning(
                "issue %s is paused (%s): `verdicts issue send %s` resumes it",
                issue.id,
                issue.paused_reason,
                issue.id,
                extra={"issue_id": issue.id},
            )
    if not ready:
        return []
    settings.require_real_secret()
    provider = get_provider(settings)
    fallback = get_fallback(settings)
    summaries = []
    try:
        for issue in reversed(ready):  # oldest first: listed newest first
            if STOP.is_set():  # SIGTERM during the one before: the next run sends this one
                break
            summaries.append(send_issue(settings, saved_id(issue), provider, fallback=fallback, actor=SCHEDULER))
        return summaries
    finally:
        provider.close()
        if fallback:
            fallback.close()
