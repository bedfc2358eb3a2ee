"""The `verdicts` command line: one command per thing an operator or editor does."""

from __future__ import annotations

import logging
import shutil
import sys
import webbrowser
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipeline import content, issues
from pipeline.config import Settings, get_settings
from pipeline.db import require_schema, session_scope, upgrade
from pipeline.errors import InvalidInput, RenderError, VerdictsError
from pipeline.models import utcnow
from pipeline.providers import get_provider
from pipeline.render import Recipient, personalise, render_issue
from pipeline.send import ProgressFn, build_message, campaign_key, send_issue
from subscribers import csvio, service
from subscribers.models import SubscriberStatus

app = typer.Typer(help="Weekly AI Tool Verdicts: build, preview and send the weekly newsletter.", no_args_is_help=True, pretty_exceptions_enable=False)
comparisons_app = typer.Typer(help="Import and list comparisons.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Manage readers.", no_args_is_help=True)
issue_app = typer.Typer(help="Build, preview, approve and send issues.", no_args_is_help=True)
app.add_typer(comparisons_app, name="comparisons")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(issue_app, name="issue")

out = Console()
err = Console(stderr=True)

NowOption = Annotated[Optional[str], typer.Option("--now", help="Pretend it is this moment (ISO 8601 with a zone).")]


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"VERDICTS_{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise VerdictsError(f"configuration: {problems}") from None


def _ready() -> Settings:
    settings = _settings()
    require_schema(settings.database_url)
    return settings


def _parse_moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} {value!r} is not an ISO 8601 date-time, e.g. 2026-11-30T09:00:00+00:00") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{option} {value!r} has no time zone: add one, e.g. {value}+00:00 or {value}Z")
    if option == "--now" and moment > utcnow():
        # A future cut-off would hide every comparison published before it from later issues.
        raise InvalidInput(f"--now {value!r} is in the future; use it only to replay a past moment")
    return moment


@contextmanager
def _progress(label: str) -> Iterator[ProgressFn]:
    """A Rich bar on a terminal; plain log lines (every ~10%) when piped or scheduled."""
    if err.is_terminal:
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    step = {"next": 0}

    def log_line(done: int, total: int) -> None:
        if done >= step["next"] or done == total:
            err.print(f"{label}: {done}/{total}", highlight=False)
            step["next"] = done + max(1, total // 10)

    yield log_line


@app.command()
def init() -> None:
    """Create the database, or upgrade it to the newest schema."""
    settings = _settings()
    rev = upgrade(settings.database_url)
    out.print(f"Database ready at schema {rev} ({settings.database_url}).")


@app.command()
def demo() -> None:
    """Sample comparisons and readers, then build and send this week's issue to the outbox."""
    from pipeline.demo import run_demo

    settings = _settings()
    with _progress("Sending") as progress:
        result = run_demo(settings, utcnow(), progress)
    out.print(result.message)
    if result.summary:
        out.print(result.summary.line())
    emails = sorted(result.folder.glob("*.eml"))
    out.print(f"\n[bold]{len(emails)} emails[/] in {result.folder.resolve()}/")
    out.print(f"Open the HTML preview: {result.preview.resolve()}")
    command = "verdicts" if shutil.which("verdicts") else sys.argv[0]
    out.print(f"Or read it as plain text: {command} issue preview {result.issue_id} --text", highlight=False)
    out.print(f"Sign-up and unsubscribe pages: {command} serve, then open http://127.0.0.1:8000/subscribe", highlight=False)


# --- comparisons -------------------------------------------------------------------------


@comparisons_app.command("import")
def comparisons_import(
    paths: Annotated[list[Path], typer.Argument(help="JSON or YAML files.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
) -> None:
    """Import comparisons; all files are checked before anything is written."""
    settings = _ready()
    items = content.load_files(paths)
    if dry_run:
        out.print(f"{len(items)} comparison(s) are valid; nothing written (dry run).")
        return
    with session_scope(settings.database_url) as session:
        created, updated = content.upsert(session, items)
    out.print(f"Imported {len(items)} comparison(s): {created} new, {updated} updated.")


@comparisons_app.command("list")
def comparisons_list(since: Annotated[Optional[str], typer.Option(help="Only those published since (ISO date).")] = None) -> None:
    """Slug, title, published date, panel ship % per tool, community %."""
    settings = _ready()
    since_dt = _parse_moment(since if since is None or "T" in since else f"{since}T00:00:00+00:00", "--since")
    table = Table("slug", "title", "published", "panel ship %", "community %")
    with session_scope(settings.database_url) as session:
        for c in content.list_comparisons(session, since_dt):
            panel = ", ".join(f"{t.name} {content.panel_split(c, t).label()}" for t in c.tools)
            community = ", ".join(f"{t.name} {content.community_split(t).label()}" for t in c.tools)
            table.add_row(c.slug, c.title, f"{c.published_at:%Y-%m-%d %H:%M}", panel, community)
    out.print(table)


# --- subscribers -------------------------------------------------------------------------


@subscribers_app.command("add")
def subscribers_add(
    email: str,
    name: Annotated[Optional[str], typer.Option(help="Display name for the greeting.")] = None,
    confirmed: Annotated[bool, typer.Option("--confirmed", help="Skip double opt-in (you hold their consent).")] = False,
) -> None:
    """Add one reader (pending unless --confirmed)."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        result = service.add_subscriber(session, email, name, confirmed=confirmed, source="cli")
    if result.outcome == "suppressed":
        raise VerdictsError(f"{result.subscriber.email} unsubscribed earlier; only they can opt in again")
    out.print(f"{result.subscriber.email}: {result.outcome} ({result.subscriber.status.value}).")


@subscribers_app.command("import")
def subscribers_import(
    file: Path,
    confirmed: Annotated[bool, typer.Option("--confirmed", help="Mark imported readers confirmed.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows, report the bad.")] = False,
) -> None:
    """Import readers from a CSV with columns email,name."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        report = csvio.import_csv(session, file, confirmed=confirmed, skip_invalid=skip_invalid)
    for row in report.rows:
        if row.reason:
            err.print(f"line {row.line}: {row.email or '(empty)'}: {row.outcome}: {row.reason}", highlight=False)
    counts = report.counts()
    out.print("Imported: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ".")


@subscribers_app.command("export")
def subscribers_export(file: Annotated[Optional[Path], typer.Argument(help="Write here instead of stdout.")] = None) -> None:
    """Export every reader as CSV."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        if file is None:
            csvio.export_csv(session, sys.stdout)
            return
        with file.open("w", newline="", encoding="utf-8") as fh:
            count = csvio.export_csv(session, fh)
    err.print(f"Exported {count} reader(s) to {file}.")


@subscribers_app.command("list")
def subscribers_list(status: Annotated[Optional[SubscriberStatus], typer.Option(help="Only this status.")] = None) -> None:
    """Readers with their status."""
    settings = _ready()
    table = Table("email", "name", "status", "source", "since")
    with session_scope(settings.database_url) as session:
        for s in service.list_subscribers(session, status):
            table.add_row(s.email, s.name, s.status.value, s.source, f"{s.created_at:%Y-%m-%d}")
    out.print(table)


@subscribers_app.command("remove")
def subscribers_remove(email: str) -> None:
    """Unsubscribe a reader (admin withdrawal); a re-import will not bring them back."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        sub = service.get_by_email(session, email)
        service.unsubscribe(session, sub, trigger="admin")
    out.print(f"{sub.email} is unsubscribed.")


@subscribers_app.command("suppress")
def subscribers_suppress(
    email: str,
    reason: Annotated[str, typer.Option(help="admin, complaint or bounce.")] = "admin",
) -> None:
    """Never send to this address again, whether or not it is a reader yet."""
    if reason not in ("admin", "complaint", "bounce"):
        raise InvalidInput(f"--reason {reason!r}: use admin, complaint or bounce")
    settings = _ready()
    with session_scope(settings.database_url) as session:
        service.suppress(session, email, reason)
    out.print(f"{service.normalise_email(email)} is suppressed ({reason}).")


@subscribers_app.command("show")
def subscribers_show(email: str) -> None:
    """One reader: status, dates and the consent trail."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        sub = service.get_by_email(session, email)
        trail = service.consent_trail(session, sub)
        suppressed = service.is_suppressed(session, sub.email)
    out.print(f"[bold]{sub.email}[/] {sub.name!r} — {sub.status.value}{' (suppressed)' if suppressed else ''}", highlight=False)
    for label, value in (("signed up", sub.created_at), ("confirmed", sub.confirmed_at), ("unsubscribed", sub.unsubscribed_at), ("paused until", sub.paused_until)):
        if value:
            out.print(f"  {label}: {value:%Y-%m-%d %H:%M} UTC", highlight=False)
    table = Table("when (UTC)", "event", "source", "wording", "trigger", "ip", "user agent", title="Consent trail")
    for c in trail:
        table.add_row(f"{c.at:%Y-%m-%d %H:%M:%S}", c.event.value, c.source, c.wording_version or "", c.trigger or "", c.ip or "", c.user_agent or "")
    out.print(table)


@subscribers_app.command("purge")
def subscribers_purge() -> None:
    """Delete sign-ups unconfirmed after VERDICTS_PENDING_DAYS; clear old IP/user-agent evidence."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        purged = service.purge_pending(session, settings.pending_days)
        cleared = service.expire_evidence(session, settings.evidence_retention_days)
    out.print(f"Purged {purged} unconfirmed sign-up(s); cleared IP/user agent from {cleared} old consent record(s).")


# --- issues ------------------------------------------------------------------------------


@issue_app.command("build")
def issue_build(now: NowOption = None) -> None:
    """Select the week's new comparisons into a draft; prints its id."""
    settings = _ready()
    moment = _parse_moment(now, "--now") or utcnow()
    with session_scope(settings.database_url) as session:
        result = issues.build_issue(session, now=moment, tz=settings.tz, max_comparisons=settings.max_comparisons)
    err.print(result.message, highlight=False)
    if result.issue is not None:
        out.print(result.issue.id)


@issue_app.command("list")
def issue_list() -> None:
    """Every issue with its status and delivery counts."""
    settings = _ready()
    table = Table("id", "week", "status", "subject", "sent", "failed", "queued")
    with session_scope(settings.database_url) as session:
        for i in issues.list_issues(session):
            counts = issues.delivery_counts(session, i.id)
            table.add_row(str(i.id), i.week, i.status.value, i.subject, str(counts["sent"]), str(counts["failed"]), str(counts["pending"] + counts["sending"]))
    out.print(table)


@issue_app.command("show")
def issue_show(issue_id: int) -> None:
    """Status, subject, comparisons and delivery counts of one issue."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        counts = issues.delivery_counts(session, issue.id)
        items = issues.issue_comparisons(session, issue)
    out.print(f"[bold]Issue {issue.id}[/] ({issue.week}) — {issue.status.value}", highlight=False)
    out.print(f"Subject:   {issue.subject}\nPreheader: {issue.preheader}", highlight=False)
    for pos, c in enumerate(items, 1):
        out.print(f"  {pos}. {c.title} ({c.slug})", highlight=False)
    if issue.more_count:
        out.print(f"  … and {issue.more_count} more on the site")
    queued = counts["pending"] + counts["sending"]
    out.print(f"Deliveries: queued {queued}, sent {counts['sent']}, failed {counts['failed']}, "
              f"unknown {counts['unknown']}, suppressed {counts['suppressed']}", highlight=False)


@issue_app.command("preview")
def issue_preview(
    issue_id: int,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write the HTML here.")] = None,
    text: Annotated[bool, typer.Option("--text", help="Print the plain-text version.")] = False,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the HTML in a browser.")] = False,
) -> None:
    """Render the issue as a sample reader would get it."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        rendered = render_issue(session, issues.get_issue(session, issue_id), settings)
    copy = personalise(rendered, Recipient(0, "preview@example.com", "Reader"), settings)
    for warning in rendered.lint.warnings + rendered.lint.errors:
        err.print(f"lint: {warning}", highlight=False)
    if text:
        out.print(copy.text, markup=False, highlight=False)
        return
    target = out_file or Path(f"issue-{issue_id}-preview.html")
    target.write_text(copy.html, encoding="utf-8")
    err.print(f"Wrote {target} ({rendered.lint.html_bytes / 1024:.1f} KB of HTML).", highlight=False)
    if open_browser:
        webbrowser.open(target.resolve().as_uri())


@issue_app.command("approve")
def issue_approve(issue_id: int) -> None:
    """Approve a draft for sending."""
    settings = _ready()
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        lint = render_issue(session, issue, settings).lint
        if lint.errors:
            raise RenderError(f"issue {issue_id} cannot be approved: " + "; ".join(lint.errors))
        issues.approve(session, issue)
    for warning in lint.warnings:
        err.print(f"lint: {warning}", highlight=False)
    out.print(f"Issue {issue.id} is {issue.status.value}. The scheduler sends it within minutes, or now: verdicts issue send {issue.id}")


@issue_app.command("send")
def issue_send(issue_id: int, workers: Annotated[int, typer.Option(min=1, max=1, help="Sender processes (more come with PostgreSQL).")] = 1) -> None:
    """Send an approved issue to every confirmed reader; run again to resume."""
    settings = _ready()
    settings.require_real_secret()
    provider = get_provider(settings)
    try:
        with _progress(f"Issue {issue_id}") as progress:
            summary = send_issue(settings, issue_id, provider, progress)
    finally:
        provider.close()
    out.print(summary.line(), highlight=False)
    if summary.unknown:
        err.print(f"{summary.unknown} deliveries with unknown outcome: check the provider's log before resending them.")


@issue_app.command("test-send")
def issue_test_send(issue_id: int, to: Annotated[list[str], typer.Option("--to", help="Address to send a [TEST] copy to.")]) -> None:
    """Send a [TEST] copy to editors; not counted as a delivery."""
    settings = _ready()
    recipients = [Recipient(0, service.normalise_email(addr), "Editor") for addr in to]
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
        rendered = render_issue(session, issue, settings)
    campaign = campaign_key(issue)
    messages = [build_message(rendered, r, settings, delivery_id=None, campaign=campaign, subject_prefix="[TEST] ") for r in recipients]
    provider = get_provider(settings)
    try:
        outcomes = provider.send_batch(messages, campaign=campaign)
    finally:
        provider.close()
    for r, o in zip(recipients, outcomes):
        out.print(f"{r.email}: {'sent' if o.ok else 'failed: ' + (o.error or '')} {o.provider_message_id or ''}", highlight=False)


@app.command("run-weekly")
def run_weekly_cmd(now: NowOption = None) -> None:
    """What the scheduler runs: build this week's issue, then send it when approved."""
    from pipeline.weekly import run_weekly

    settings = _settings()
    moment = _parse_moment(now, "--now") or utcnow()
    with _progress("Sending") as progress:
        result = run_weekly(settings, moment, progress)
    out.print(result.message, highlight=False)
    if result.summary:
        out.print(result.summary.line(), highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app: sign-up, confirmation, one-click unsubscribe, preferences."""
    import uvicorn

    from pipeline.web.app import create_app

    settings = _ready()
    settings.require_real_secret()
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True, server_header=False)


@app.command()
def scheduler() -> None:
    """Run the weekly job on VERDICTS_SCHEDULE until stopped (same as `python scheduler.py`)."""
    from pipeline.schedule import run_forever

    run_forever(_settings())


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()
    except VerdictsError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
