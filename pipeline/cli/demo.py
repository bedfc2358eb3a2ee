"""`verdicts demo`: the whole pipeline on a fresh machine, with sample content and readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.config import Settings
from pipeline.content.import_format import ComparisonIn
from pipeline.content.importing import load_file, upsert
from pipeline.content.issues import approve, build_issue, get_issue, list_issues
from pipeline.delivery.messages import campaign_key
from pipeline.delivery.providers import get_provider
from pipeline.delivery.send import ProgressFn, send_issue
from pipeline.delivery.summary import SendSummary
from pipeline.email.render import Recipient, personalise, render_issue
from pipeline.resources import shipped_folder
from pipeline.store.db import session_scope, upgrade
from pipeline.store.models import IssueStatus, saved_id
from subscribers.csvio import import_csv

SAMPLES = shipped_folder("pipeline", "samples")


def rebased(items: list[ComparisonIn], now: datetime) -> list[ComparisonIn]:
    """Move the samples' dates so the newest was published an hour ago, keeping their spacing."""
    shift = now - timedelta(hours=1) - max(c.published_at for c in items)
    return [c.model_copy(update={"published_at": c.published_at + shift}) for c in items]


@dataclass(frozen=True)
class DemoResult:
    issue_id: int
    message: str
    folder: Path
    preview: Path
    summary: SendSummary | None


def run_demo(settings: Settings, now: datetime, on_progress: ProgressFn | None = None) -> DemoResult:
    upgrade(settings.database_url)
    samples = [rec.comparison for rec in load_file(SAMPLES / "comparisons.yaml")]
    with session_scope(settings.database_url) as session:
        upsert(session, rebased(samples, now))
        import_csv(session, SAMPLES / "subscribers.csv", confirmed=True, skip_invalid=False)
    with session_scope(settings.database_url) as session:
        built = build_issue(session, now=now, tz=settings.tz, max_comparisons=settings.max_comparisons)
        # From the second week on the samples are old news: show the newest issue instead.
        issue = built.issue or list_issues(session)[0]
        issue_id = saved_id(issue)
        if issue.status is IssueStatus.draft:
            approve(session, issue)
    summary = None
    if issue.status is not IssueStatus.sent:
        provider = get_provider(settings)
        try:
            summary = send_issue(settings, issue_id, provider, on_progress)
        finally:
            provider.close()
    with session_scope(settings.database_url) as session:
        issue = get_issue(session, issue_id)
        rendered = render_issue(session, issue, settings)
    folder = settings.outbox_dir / campaign_key(issue)
    folder.mkdir(parents=True, exist_ok=True)
    preview = folder / "preview.html"
    preview.write_text(
        personalise(rendered, Recipient(0, "preview@example.com", "Reader"), settings).html, encoding="utf-8"
    )
    return DemoResult(issue_id, built.message, folder, preview, summary)
