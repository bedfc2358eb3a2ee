"""`verdicts subscribers …`: readers, their consent trail, suppression and clean-up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pipeline.cli.audit import cli_actor
from pipeline.cli.console import err, out, ready
from pipeline.delivery.welcome import send_pending_welcomes
from pipeline.errors import InvalidInput, NotFound, VerdictsError
from pipeline.files import written
from pipeline.store import audit
from pipeline.store.db import session_scope
from subscribers import addresses, consent, csvio, lookup, privacy, service
from subscribers.consent import Evidence
from subscribers.models import SubscriberStatus

subscribers_app = typer.Typer(help="Manage readers.", no_args_is_help=True)


@subscribers_app.command("add")
def subscribers_add(
    email: str,
    name: Annotated[str | None, typer.Option(help="Display name for the greeting.")] = None,
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="Skip double opt-in (you hold their consent).")
    ] = False,
) -> None:
    """Add one reader (pending unless --confirmed)."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        result = service.add_subscriber(session, email, name, confirmed=confirmed, source="cli")
        entry = consent.suppression(session, result.subscriber.email) if result.outcome == "suppressed" else None
    if result.outcome == "suppressed":
        why = f"is on the suppression list ({consent.why_suppressed(entry)})" if entry else "unsubscribed"
        raise VerdictsError(f"{result.subscriber.email} {why}: only they can opt in again, through the sign-up page")
    out.print(f"{result.subscriber.email}: {result.outcome} ({result.subscriber.status.value}).")


#: The most rows `list` lays out: a terminal table of a million took 370 s and 3.6 GB.
LIST_LIMIT = 10_000
#: Rows named on the terminal: past this, the summary would scroll away under them (``--report`` has them all).
SHOWN_ROWS = 20


@subscribers_app.command("import")
def subscribers_import(
    file: Path,
    confirmed: Annotated[bool, typer.Option("--confirmed", help="Mark imported readers confirmed.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows, report the bad.")] = False,
    report_file: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Write every refused or suppressed row (line, email, outcome, reason) to this CSV."
        ),
    ] = None,
) -> None:
    """Import readers from a CSV with columns email,name."""
    settings = ready()
    try:
        with session_scope(settings.database_url) as session:
            report = csvio.import_csv(
                session, file, confirmed=confirmed, skip_invalid=skip_invalid, max_mb=settings.csv_import_max_mb
            )
    except csvio.BadRows as exc:
        if report_file is None:
            raise VerdictsError(f"{exc}; --report FILE lists every one") from None
        _write_report(exc.report, report_file)
        raise VerdictsError(f"{exc}; every one is in {report_file}") from None
    for row in report.rows[:SHOWN_ROWS]:
        err.print(f"line {row.line}: {row.email or '(empty)'}: {row.outcome}: {row.reason}", highlight=False)
    if report_file is not None:
        _write_report(report, report_file)
        err.print(f"{len(report.rows):,} row(s) refused or suppressed, each one in {report_file}.", highlight=False)
    elif len(report.rows) > SHOWN_ROWS:
        err.print(
            f"… and {len(report.rows) - SHOWN_ROWS:,} more such rows: --report FILE lists every one.", highlight=False
        )
    out.print(
        "Imported: "
        + (", ".join(f"{n:,} {k}" for k, n in sorted(report.tally.items())) or "nothing, the file has no rows")
        + "."
    )


def _write_report(report: csvio.ImportReport, path: Path) -> None:
    with written(path, newline="") as fh:
        csvio.write_report(report, fh)


@subscribers_app.command("export")
def subscribers_export(
    file: Annotated[Path | None, typer.Argument(help="Write here instead of stdout (`-`: stdout).")] = None,
) -> None:
    """Export every reader as CSV."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        if file is None or str(file) == "-":
            csvio.export_csv(session, sys.stdout)
            return
        with written(file, newline="") as fh:
            count = csvio.export_csv(session, fh)
    err.print(f"Exported {count:,} reader(s) to {file}.")


@subscribers_app.command("list")
def subscribers_list(
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[
        int,
        typer.Option(
            min=1,
            max=LIST_LIMIT,
            help="Show at most this many, the earliest sign-ups first (`export` writes them all).",
        ),
    ] = 100,
) -> None:
    """Readers with their status (and how they left); `export` writes them all."""
    settings = ready()
    table = Table("email", "name", "status", "source", "since")
    with session_scope(settings.database_url) as session:
        shown = list(lookup.readers(session, status, limit=limit))
        left = lookup.how_they_left(session, [r.id for r in shown if r.status is SubscriberStatus.unsubscribed])
        total = lookup.count_readers(session, status) if len(shown) == limit else len(shown)
    if not shown:
        out.print(f"No {status.value + ' ' if status else ''}readers.")
        return
    for r in shown:
        how = f" ({left[r.id]})" if r.id in left else ""
        table.add_row(r.email, r.name, r.status.value + how, r.source, f"{r.created_at:%Y-%m-%d}")
    out.print(table)
    if total > len(shown):
        more = "--limit N shows more, " if limit < LIST_LIMIT else ""
        err.print(
            f"Showing the first {len(shown):,} of {total:,}: "
            f"{more}`verdicts subscribers export FILE` writes them all as CSV.",
            highlight=False,
        )


@subscribers_app.command("remove")
def subscribers_remove(email: str) -> None:
    """Unsubscribe a reader (admin withdrawal); a re-import will not bring them back."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        sub = lookup.get_by_email(session, email)
        changed = service.unsubscribe(session, sub, trigger="admin")
        if changed:
            audit.record(session, cli_actor(), "subscriber.unsubscribe", detail=_reader(sub.email))
    out.print(f"{sub.email} is unsubscribed." if changed else f"{sub.email} had already unsubscribed: nothing changed.")


@subscribers_app.command("suppress")
def subscribers_suppress(
    email: str,
    reason: Annotated[str, typer.Option(help="admin, complaint or bounce.")] = "admin",
) -> None:
    """Never send to this address again, whether or not it is a reader yet."""
    if reason not in ("admin", "complaint", "bounce"):
        raise InvalidInput(f"--reason {reason!r}: use admin, complaint or bounce")
    settings = ready()
    with session_scope(settings.database_url) as session:
        service.suppress(session, email, reason)
        detail = {**_reader(addresses.normalise_email(email)), "reason": reason}
        audit.record(session, cli_actor(), "subscriber.suppress", detail=detail)
    out.print(f"{addresses.normalise_email(email)} is suppressed ({reason}).")


@subscribers_app.command("erase")
def subscribers_erase(
    email: str, yes: Annotated[bool, typer.Option("--yes", help="Yes, erase them: it cannot be undone.")] = False
) -> None:
    """Erase a reader who asked by other means than their preferences page (GDPR): as that page does."""
    settings = ready()
    if not yes:
        raise InvalidInput(f"erasing {email!r} cannot be undone: run it again with --yes to erase them")
    with session_scope(settings.database_url) as session:
        sub = lookup.get_by_email(session, email)
        address = sub.email
        privacy.erase(session, sub, Evidence(source="cli"))
        audit.record(session, cli_actor(), "subscriber.erase", detail=_reader(address))
    out.print(f"{addresses.mask(address)} is erased; its hash stays on the suppression list.", highlight=False)


def _reader(address: str) -> dict[str, object]:
    """A reader as the audit trail names them: masked to read, hashed to find (never the address itself)."""
    return {"reader": addresses.mask(address), "email_hash": addresses.email_hash(address)}


@subscribers_app.command("welcome")
def subscribers_welcome() -> None:
    """Send the welcome emails still waiting (a crash, a provider that was down); the scheduler does it too."""
    settings = ready()
    settings.require_real_secret()
    summary = send_pending_welcomes(settings)
    out.print(summary.line() if summary.anything else "No welcome email is waiting.")


@subscribers_app.command("show")
def subscribers_show(email: str) -> None:
    """One reader: status, dates and the consent trail."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        address = addresses.normalise_email(email)
        sub, entry = lookup.find_subscriber(session, address), consent.suppression(session, address)
        if sub is None:
            if entry is None:
                raise NotFound(f"no subscriber with the address {email!r}, and it is not on the suppression list")
            out.print(
                f"{email} is not a reader. It is on the suppression list ({consent.why_suppressed(entry)}): "
                "nothing is sent to it, and only its owner can sign up again.",
                highlight=False,
            )
            return
        trail = lookup.consent_trail(session, sub)
    suppressed = f" (suppressed: {consent.why_suppressed(entry)})" if entry else ""
    out.print(Text.assemble((sub.email, "bold"), f" {sub.name!r} — {sub.status.value}{suppressed}"), highlight=False)
    for label, value in (
        ("signed up", sub.created_at),
        ("confirmed", sub.confirmed_at),
        ("unsubscribed", sub.unsubscribed_at),
        ("paused until", sub.paused_until),
    ):
        if value:
            out.print(f"  {label}: {value:%Y-%m-%d %H:%M} UTC", highlight=False)
    table = Table("when (UTC)", "event", "source", "wording", "trigger", "ip", "user agent", title="Consent trail")
    for c in trail:
        table.add_row(
            f"{c.at:%Y-%m-%d %H:%M:%S}",
            c.event.value,
            c.source,
            c.wording_version or "",
            c.trigger or "",
            c.ip or "",
            c.user_agent or "",
        )
    out.print(table)


@subscribers_app.command("purge")
def subscribers_purge() -> None:
    """Delete sign-ups unconfirmed after VERDICTS_PENDING_DAYS; clear old IP/user-agent evidence."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        purged = privacy.purge_pending(session, settings.pending_days)
        cleared = privacy.expire_evidence(session, settings.evidence_retention_days)
    out.print(f"Purged {purged} unconfirmed sign-up(s); cleared IP/user agent from {cleared} old consent record(s).")


# --- issues ------------------------------------------------------------------------------
