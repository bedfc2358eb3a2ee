"""`verdicts issue`: an issue's life from the command line: build the week's draft, list and show issues,
preview, edit, approve (or take the approval back), send to readers and send test copies to editors."""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pipeline.cli.audit import cli_actor
from pipeline.cli.console import err, out, parse_moment, progress, ready
from pipeline.cli.report import issue_report_command
from pipeline.content import editing, issues
from pipeline.content.audited import audited, record_build, unapproval
from pipeline.delivery.events import event_counts
from pipeline.delivery.providers import get_fallback, get_provider
from pipeline.delivery.send import send_issue, send_test_copies
from pipeline.delivery.stop import graceful_stop
from pipeline.email import approval
from pipeline.email.render import Recipient, personalise, render_issue
from pipeline.errors import InvalidState
from pipeline.files import written
from pipeline.ops import signoff
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import IssueStatus, saved_id, utcnow
from subscribers.addresses import normalise_email

issue_app = typer.Typer(help="Build, preview, approve and send issues.", no_args_is_help=True)

NowOption = Annotated[str | None, typer.Option("--now", help="Pretend it is this moment (ISO 8601 with a zone).")]

issue_app.command("report")(issue_report_command)


@issue_app.command("build")
def issue_build(now: NowOption = None) -> None:
    """Select the week's new comparisons into a draft; prints its id."""
    settings = ready()
    moment = parse_moment(now, "--now") or utcnow()
    with session_scope(settings.database_url) as session:
        result = issues.build_issue(session, now=moment, tz=settings.tz, max_comparisons=settings.max_comparisons)
        record_build(session, cli_actor(), result)
    err.print(result.message, highlight=False)
    if result.issue is not None:
        out.print(result.issue.id)


@issue_app.command("list")
def issue_list() -> None:
    """Every issue with its status and delivery counts."""
    settings = ready()
    table = Table("id", "week", "status", "subject", "sent", "failed", "queued")
    with session_scope(settings.database_url) as session:
        for i in issues.list_issues(session):
            counts = issues.delivery_counts(session, saved_id(i))
            table.add_row(
                str(i.id),
                i.week,
                i.status.value,
                i.subject,
                f"{counts['sent']:,}",
                f"{counts['failed']:,}",
                f"{counts['pending'] + counts['sending']:,}",
            )
    out.print(table)


@issue_app.command("show")
def issue_show(issue_id: int) -> None:
    """Status, subject, comparisons and delivery counts of one issue."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        counts = issues.delivery_counts(session, issue_id)
        events = event_counts(session, issue_id)
        items = issues.issue_comparisons(session, issue)
        reasons = issues.failure_reasons(session, issue_id)
    out.print(Text.assemble((f"Issue {issue.id}", "bold"), f" ({issue.week}) — {issue.status.value}"), highlight=False)
    if issue.paused_reason:
        out.print(
            f"Paused:    {issue.paused_reason}\n           `verdicts issue send {issue.id}` resumes it", highlight=False
        )
    out.print(f"Subject:   {issue.subject}\nPreheader: {issue.preheader}", highlight=False)
    for pos, c in enumerate(items, 1):
        out.print(f"  {pos}. {c.title} ({c.slug})", highlight=False)
    if issue.more_count:
        out.print(f"  … and {issue.more_count} more on the site")
    queued = counts["pending"] + counts["sending"]
    out.print(
        f"Deliveries: queued {queued:,}, sent {counts['sent']:,}, failed {counts['failed']:,}, "
        f"unknown {counts['unknown']:,}, suppressed {counts['suppressed']:,}",
        highlight=False,
    )
    for status, reason, n in reasons:
        out.print(f"  {n:,} {status}: {reason}", highlight=False)
    unlisted = counts["failed"] + counts["unknown"] - sum(n for _, _, n in reasons)
    if unlisted:
        out.print(f"  … and {unlisted:,} more for other reasons", highlight=False)
    out.print(
        f"Provider reports: delivered {events['delivered']}, bounced {events['bounced'] + events['soft_bounced']}, "
        f"complained {events['complained']}, unsubscribed {events['unsubscribed']}",
        highlight=False,
    )


@issue_app.command("preview")
def issue_preview(
    issue_id: int,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the HTML (with --text, the text) here.")] = None,
    text: Annotated[bool, typer.Option("--text", help="The plain-text version: printed, or written to --out.")] = False,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the HTML in a browser.")] = False,
) -> None:
    """Render the issue as a sample reader would get it."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        rendered = render_issue(session, issues.get_issue(session, issue_id), settings)
    copy = personalise(rendered, Recipient(0, "preview@example.com", "Reader"), settings)
    for warning in rendered.lint.warnings + rendered.lint.errors:
        err.print(f"lint: {warning}", highlight=False)
    if text and out_file is None:
        # Not through the console: it wraps at the terminal's width, cutting long links in two.
        print(copy.text)
        return
    target = out_file or Path(f"issue-{issue_id}-preview.html")
    with written(target) as fh:
        fh.write(copy.text if text else copy.html)
    size = (
        f"{len(copy.text.encode()) / 1024:.1f} KB of text"
        if text
        else f"{rendered.lint.html_bytes / 1024:.1f} KB of HTML"
    )
    err.print(f"Wrote {target} ({size}).", highlight=False)
    if open_browser and not webbrowser.open(target.resolve().as_uri()):
        err.print(f"No browser could be opened here: open {target.resolve()} yourself.", highlight=False)


@issue_app.command("approve")
def issue_approve(
    issue_id: int,
    at: Annotated[
        str | None, typer.Option("--at", help="Send at this time (ISO 8601 with a zone), not at the next run.")
    ] = None,
) -> None:
    """Approve a draft for sending (optionally scheduled); approval locks it."""
    settings = ready()
    when = parse_moment(at, "--at")
    if settings.approvals_required > 1:  # the command line knows no person: it cannot be one of two
        raise InvalidState(
            f"VERDICTS_APPROVALS_REQUIRED is {settings.approvals_required}: approve issue {issue_id} in the editor, "
            "where each approver logs in as themself (the command line cannot tell one person from another)"
        )
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        with audited(session, cli_actor(), "issue.schedule" if when else "issue.approve", issue):
            lint = approval.approve(session, issue, settings, when)
    for warning in lint.warnings:
        err.print(f"lint: {warning}", highlight=False)
    if when:
        out.print(
            f"Issue {issue.id} is scheduled for {when.isoformat()}. Cancel with: verdicts issue unapprove {issue.id}",
            highlight=False,
        )
    else:
        # Nothing here knows whether a scheduler runs: say what sends it either way.
        out.print(
            f"Issue {issue.id} is {issue.status.value}. A running scheduler (`verdicts scheduler`) sends it within "
            f"{settings.send_poll_minutes} minute(s); to send it now: verdicts issue send {issue.id}",
            highlight=False,
        )


@issue_app.command("unapprove")
def issue_unapprove(issue_id: int) -> None:
    """Back to a draft, to edit it again; cancels a scheduled send."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        was_draft = issue.status is IssueStatus.draft
        with audited(session, cli_actor(), unapproval(issue), issue):
            editing.unapprove(session, issue)
    out.print(
        f"Issue {issue.id} is a draft already: nothing changed." if was_draft else f"Issue {issue.id} is a draft again."
    )


@issue_app.command("edit")
def issue_edit(
    issue_id: int,
    subject: Annotated[str | None, typer.Option(help="New subject line.")] = None,
    preheader: Annotated[str | None, typer.Option(help="New preheader (inbox preview text).")] = None,
    intro: Annotated[str | None, typer.Option(help="New intro (short Markdown); '-' reads it from stdin.")] = None,
) -> None:
    """Change a draft's subject, preheader or intro."""
    settings = ready()
    if intro == "-":
        intro = sys.stdin.read()
    if subject is None and preheader is None and intro is None:
        raise typer.BadParameter("give --subject, --preheader or --intro")
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        with audited(session, cli_actor(), "issue.edit", issue):
            editing.edit(session, issue, subject=subject, preheader=preheader, intro=intro)
        signoff.note_change(session, issue, cli_actor())  # whoever changed it last cannot approve it (two-person rule)
        lint = render_issue(session, issue, settings).lint
    for warning in lint.warnings + lint.errors:
        err.print(f"lint: {warning}", highlight=False)
    out.print(f"Issue {issue.id} saved. Preview: verdicts issue preview {issue.id} --open")


@issue_app.command("send")
def issue_send(
    issue_id: int, workers: Annotated[int, typer.Option(min=1, max=32, help="Sender processes sharing the issue.")] = 1
) -> None:
    """Send an approved issue to every confirmed reader; run again to resume."""
    settings = ready()
    settings.require_real_secret()
    graceful_stop()
    provider = get_provider(settings)  # a missing credential stops here, before anything is sent
    fallback = get_fallback(settings)
    try:
        with progress(f"Issue {issue_id}") as on_progress:
            if workers > 1:
                from pipeline.delivery.parallel import send_parallel

                summary = send_parallel(settings, issue_id, workers, on_progress, actor=cli_actor())
            else:
                summary = send_issue(settings, issue_id, provider, on_progress, fallback, actor=cli_actor())
    finally:
        provider.close()
        if fallback:
            fallback.close()
    out.print(summary.line(), highlight=False)
    if summary.unknown:
        err.print(
            f"{summary.unknown} deliveries with unknown outcome: the provider may have accepted them. "
            "Webhook events settle them; otherwise check the provider's log."
        )


@issue_app.command("test-send")
def issue_test_send(
    issue_id: int, to: Annotated[list[str], typer.Option("--to", help="Address to send a [TEST] copy to.")]
) -> None:
    """Send a [TEST] copy to editors; not counted as a delivery."""
    settings = ready()
    addresses = [normalise_email(addr) for addr in to]
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        results = send_test_copies(session, issue, settings, addresses)
        if sent := [address for address, o in results if o.ok]:
            audit.record(session, cli_actor(), "issue.test_send", issue=issue, detail={"to": sent})
    for address, o in results:
        out.print(
            f"{address}: {'sent' if o.ok else 'failed: ' + (o.error or '')} {o.provider_message_id or ''}",
            highlight=False,
        )
    if not all(o.ok for _, o in results):
        raise typer.Exit(1)
