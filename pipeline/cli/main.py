"""The `verdicts` command line: one command per thing an operator or editor does."""

from __future__ import annotations

import logging
import shutil
import sys
import webbrowser
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pipeline.cli.admin import database_app, editor_app, providers_app, votes_app
from pipeline.cli.config import config_app
from pipeline.cli.console import err, load_settings, out, parse_moment, progress, ready
from pipeline.content import editing, importing, issues
from pipeline.delivery.events import event_counts
from pipeline.delivery.providers import get_fallback, get_provider
from pipeline.delivery.send import graceful_stop, send_issue, send_test_copies
from pipeline.email import approval
from pipeline.email.render import Recipient, community_of, personalise, render_issue, tool_votes
from pipeline.errors import VerdictsError
from pipeline.files import written
from pipeline.resources import DISTRIBUTION
from pipeline.store.db import session_scope, shown_url, upgrade
from pipeline.store.models import IssueStatus, saved_id, utcnow
from subscribers import service
from subscribers.cli import subscribers_app

app = typer.Typer(
    help="Weekly AI Tool Verdicts: build, preview and send the weekly newsletter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
comparisons_app = typer.Typer(help="Import and list comparisons.", no_args_is_help=True)
issue_app = typer.Typer(help="Build, preview, approve and send issues.", no_args_is_help=True)
app.add_typer(comparisons_app, name="comparisons")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(issue_app, name="issue")
app.add_typer(providers_app, name="providers")
app.add_typer(votes_app, name="votes")
app.add_typer(editor_app, name="editor")
app.add_typer(database_app, name="database")
app.add_typer(config_app, name="config")

NowOption = Annotated[str | None, typer.Option("--now", help="Pretend it is this moment (ISO 8601 with a zone).")]


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"verdicts {metadata.version(DISTRIBUTION)}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command()
def init() -> None:
    """Create the database, or upgrade it to the newest schema."""
    settings = load_settings()
    rev = upgrade(settings.database_url)
    out.print(f"Database ready at schema {rev} ({shown_url(settings.database_url)}).", highlight=False)


@app.command()
def demo() -> None:
    """Sample comparisons and readers, then build and send this week's issue to the outbox."""
    from pipeline.cli.demo import run_demo

    settings = load_settings()
    with progress("Sending") as on_progress:
        result = run_demo(settings, utcnow(), on_progress)
    out.print(result.message)
    if result.summary:
        out.print(result.summary.line())
    emails = sorted(result.folder.glob("*.eml"))
    out.print(Text.assemble("\n", (f"{len(emails)} emails", "bold"), f" in {result.folder.resolve()}/"))
    out.print(f"Open the HTML preview: {result.preview.resolve()}")
    command = "verdicts" if shutil.which("verdicts") else sys.argv[0]
    out.print(f"Or read it as plain text: {command} issue preview {result.issue_id} --text", highlight=False)
    out.print(
        f"Web pages: VERDICTS_BASE_URL=http://127.0.0.1:8000 {command} serve, "
        "then open http://127.0.0.1:8000/subscribe; the sent issue's web version is at /issues, "
        "the editor at /editor (set VERDICTS_EDITOR_PASSWORD too)",
        highlight=False,
    )
    # A new user's first sign-up on the local page otherwise mails a link to the placeholder site.
    out.print(
        f"Links in emails start with VERDICTS_BASE_URL, now {settings.base_url}: "
        "set it before sending and serving to click them locally "
        "(this week's issue is sent already: delete verdicts.db and the outbox folder, then run the demo again)",
        highlight=False,
    )


# --- comparisons -------------------------------------------------------------------------


@comparisons_app.command("import")
def comparisons_import(
    paths: Annotated[list[Path], typer.Argument(help="JSON or YAML files.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
) -> None:
    """Import comparisons; all files are checked before anything is written."""
    settings = ready()
    items = importing.load_files(paths, settings.import_max_mb)
    if dry_run:
        out.print(f"{len(items)} comparison(s) are valid; nothing written (dry run).")
        return
    with session_scope(settings.database_url) as session:
        created, updated = importing.upsert(session, items)
    out.print(f"Imported {len(items)} comparison(s): {created} new, {updated} updated.")


@comparisons_app.command("list")
def comparisons_list(
    since: Annotated[str | None, typer.Option(help="Only those published since (ISO date).")] = None,
) -> None:
    """Slug, title, published date, panel ship % per tool, community %."""
    settings = ready()
    since_dt = parse_moment(since if since is None or "T" in since else f"{since}T00:00:00+00:00", "--since")
    table = Table("slug", "title", "published", "panel ship %", "community %")
    with session_scope(settings.database_url) as session:
        listed = importing.list_comparisons(session, since_dt)
        votes = tool_votes(session, listed)
        for c in listed:
            panel = ", ".join(f"{t.name} {importing.panel_split(c, t).label()}" for t in c.tools)
            community = ", ".join(f"{t.name} {community_of(t, votes).label()}" for t in c.tools)
            table.add_row(c.slug, c.title, f"{c.published_at:%Y-%m-%d %H:%M}", panel, community)
    out.print(table)


# --- subscribers -------------------------------------------------------------------------


@issue_app.command("build")
def issue_build(now: NowOption = None) -> None:
    """Select the week's new comparisons into a draft; prints its id."""
    settings = ready()
    moment = parse_moment(now, "--now") or utcnow()
    with session_scope(settings.database_url) as session:
        result = issues.build_issue(session, now=moment, tz=settings.tz, max_comparisons=settings.max_comparisons)
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
    with session_scope(settings.database_url) as session:
        issue = issues.get_issue(session, issue_id)
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
        issue = editing.edit(
            session, issues.get_issue(session, issue_id), subject=subject, preheader=preheader, intro=intro
        )
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

                summary = send_parallel(settings, issue_id, workers, on_progress)
            else:
                summary = send_issue(settings, issue_id, provider, on_progress, fallback)
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
    addresses = [service.normalise_email(addr) for addr in to]
    with session_scope(settings.database_url) as session:
        results = send_test_copies(session, issues.get_issue(session, issue_id), settings, addresses)
    for address, o in results:
        out.print(
            f"{address}: {'sent' if o.ok else 'failed: ' + (o.error or '')} {o.provider_message_id or ''}",
            highlight=False,
        )
    if not all(o.ok for _, o in results):
        raise typer.Exit(1)


@app.command("run-weekly")
def run_weekly_cmd(now: NowOption = None) -> None:
    """What the scheduler runs: build this week's issue, then send it when approved."""
    from pipeline.ops.weekly import run_weekly

    settings = load_settings()
    settings.require_real_secret()  # before the housekeeping and the build, not only before the send
    moment = parse_moment(now, "--now") or utcnow()
    with progress("Sending") as on_progress:
        result = run_weekly(settings, moment, on_progress)
    out.print(result.message, highlight=False)
    if result.summary:
        out.print(result.summary.line(), highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Web processes (limits and sessions are in the database).")] = 1,
) -> None:
    """Run the web app: sign-up, confirmation, one-click unsubscribe, preferences."""
    import uvicorn

    from pipeline.logs import logging_config

    settings = ready()
    settings.require_real_secret()
    get_provider(settings).close()  # confirmation emails need it: a missing credential stops us here
    # A factory each worker process calls. Forwarded headers are the app's (VERDICTS_TRUSTED_PROXIES), never
    # uvicorn's: its own would believe anyone on 127.0.0.1, whatever address they claimed.
    uvicorn.run(
        "pipeline.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
        log_config=logging_config(settings.log_format, settings.log_level),
    )


@app.command()
def scheduler() -> None:
    """Run the weekly job on VERDICTS_SCHEDULE until stopped (same as `python scheduler.py`)."""
    from pipeline.ops.schedule import run_forever

    # What would stop the first send stops the start (not a log line at 09:00 on Monday); the database
    # may still be starting, so run_forever waits for it before checking its schema.
    settings = load_settings()
    settings.require_real_secret()
    run_forever(settings)


def exit_code(exc: BaseException) -> int:
    """The exit code of a failure, by its kind: configuration or setup (fix it, then run again), bad data,
    temporary (the same command may succeed later: a database or provider that did not answer), other."""
    from pipeline.delivery.parallel import WorkerDied
    from pipeline.delivery.providers import ProviderConfigError, ProviderUnavailable
    from pipeline.errors import (
        EXIT_BAD_DATA,
        EXIT_CONFIGURATION,
        EXIT_FAILURE,
        EXIT_TEMPORARY,
        ConfigurationError,
        InvalidInput,
        NotFound,
    )
    from pipeline.store.db import DatabaseNotReady, DatabaseUnreachable

    kinds = (  # in this order: an unreachable database is also a DatabaseNotReady
        (EXIT_TEMPORARY, (DatabaseUnreachable, ProviderUnavailable, WorkerDied)),
        (EXIT_CONFIGURATION, (ConfigurationError, DatabaseNotReady, ProviderConfigError)),
        (EXIT_BAD_DATA, (InvalidInput, NotFound)),
    )
    return next((code for code, classes in kinds if isinstance(exc, classes)), EXIT_FAILURE)


def _log_settings() -> tuple[str, str]:
    """Format and level of the log: VERDICTS_LOG_LEVEL when it is set; otherwise warnings only, as a command's
    own output says what it did (the scheduler and `serve` log at INFO). Settings that do not load leave the
    defaults: the command then says what is wrong with them."""
    from pydantic import ValidationError

    from pipeline.config import get_settings

    try:
        settings = get_settings()
    except ValidationError:
        return "text", "WARNING"
    return settings.log_format, settings.log_level if "log_level" in settings.model_fields_set else "WARNING"


def main() -> None:
    from pipeline.errors import EXIT_INTERRUPTED
    from pipeline.logs import setup_logging

    log_format, level = _log_settings()
    setup_logging(log_format, level)
    try:
        app()
    except VerdictsError as exc:
        code = exit_code(exc)
        if log_format == "json":  # a service's log stays one JSON object a line, its last words included
            logging.getLogger("verdicts").error("error: %s", exc, extra={"exit_code": code})
        else:
            err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(code)
    except KeyboardInterrupt:  # a second Ctrl-C: the send's rows in flight say so (`issue show`)
        err.print("stopped at once (Ctrl-C)", highlight=False)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
