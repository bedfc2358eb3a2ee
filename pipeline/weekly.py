"""The weekly job, as the scheduler and `verdicts run-weekly` run it: build, then send when allowed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.config import Settings
from pipeline.db import require_schema, session_scope
from pipeline.issues import approve, build_issue, list_issues
from pipeline.models import Issue, IssueStatus, utcnow
from pipeline.providers import get_fallback, get_provider
from pipeline.send import ProgressFn, SendSummary, send_issue
from subscribers.service import expire_evidence, purge_pending


@dataclass(frozen=True)
class WeeklyResult:
    issue_id: int | None
    message: str
    summary: SendSummary | None = None


def due(issue: Issue, now: datetime) -> bool:
    """Sending (resume it), or approved with no send time or one that has come."""
    if issue.status is IssueStatus.sending:
        return True
    return issue.status is IssueStatus.approved and (issue.scheduled_for is None or issue.scheduled_for <= now)


def run_weekly(settings: Settings, now: datetime, on_progress: ProgressFn | None = None) -> WeeklyResult:
    require_schema(settings.database_url)
    settings.require_real_secret()
    with session_scope(settings.database_url) as session:
        # Housekeeping the consent rules ask for, once a week with the issue.
        purge_pending(session, settings.pending_days)
        expire_evidence(session, settings.evidence_retention_days)
        built = build_issue(session, now=now, tz=settings.tz, max_comparisons=settings.max_comparisons)
        issue = built.issue
        if issue is None:
            return WeeklyResult(None, built.message)
        if issue.status is IssueStatus.sent:
            return WeeklyResult(issue.id, f"{built.message} Nothing to send.")
        if issue.status is IssueStatus.draft:
            if settings.require_approval:
                return WeeklyResult(issue.id, f"{built.message} Waiting for an editor: `verdicts issue approve {issue.id}`.")
            approve(session, issue)
        if not due(issue, now):
            return WeeklyResult(issue.id, f"{built.message} Scheduled for {issue.scheduled_for:%Y-%m-%d %H:%M} UTC.")
    provider = get_provider(settings)
    fallback = get_fallback(settings)
    try:
        summary = send_issue(settings, issue.id, provider, on_progress, fallback)
    finally:
        provider.close()
        if fallback:
            fallback.close()
    return WeeklyResult(issue.id, built.message, summary)


def send_approved(settings: Settings) -> list[SendSummary]:
    """Send every approved issue, and resume any interrupted send: an editor's approval is enough."""
    require_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        ready = [i.id for i in list_issues(session) if due(i, utcnow())]
    if not ready:
        return []
    settings.require_real_secret()
    provider = get_provider(settings)
    fallback = get_fallback(settings)
    try:
        return [send_issue(settings, issue_id, provider, fallback=fallback) for issue_id in sorted(ready)]
    finally:
        provider.close()
        if fallback:
            fallback.close()
