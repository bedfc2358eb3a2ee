"""`verdicts audit`: the audit trail exported (CSV or JSON, to stdout) and its hash chain verified; and who the
command line records as the actor."""

from __future__ import annotations

import csv
import getpass
import json
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from pipeline.cli.console import err, out, parse_moment, ready
from pipeline.errors import VerdictsError
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import AuditEntry

audit_app = typer.Typer(help="Export and verify the audit trail.", no_args_is_help=True)

COLUMNS = ("id", "at", "actor", "action", "issue_id", "issue_revision", "detail", "hash")


class Format(StrEnum):
    csv = "csv"
    json = "json"


def cli_actor() -> str:
    """``cli:<OS user>``: who typed the command, as far as this machine knows (a shared login names the login)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return f"cli:uid {os.getuid()}"


def _row(entry: AuditEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "issue_id": entry.issue_id,
        "issue_revision": entry.issue_revision,
        "detail": entry.detail,
        "hash": entry.hash,
    }


@audit_app.command("export")
def audit_export(
    issue: Annotated[int | None, typer.Option("--issue", help="Only this issue's entries.")] = None,
    since: Annotated[str | None, typer.Option(help="Only entries from this date (ISO 8601, e.g. 2026-12-01).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv (detail as JSON text) or json.")] = Format.csv,
) -> None:
    """Every entry, oldest first, to stdout: when, who, what, the issue and its revision, what changed, the hash."""
    settings = ready()
    moment = parse_moment(since if since is None or "T" in since else f"{since}T00:00:00+00:00", "--since")
    with session_scope(settings.database_url) as session:
        rows = map(_row, audit.entries(session, issue, moment))
        if fmt is Format.json:
            # One entry a line would not be one JSON document; a list is, and the detail is an object in it.
            json.dump([{**r, "detail": json.loads(str(r["detail"]))} for r in rows], sys.stdout, ensure_ascii=False)
            sys.stdout.write("\n")
            return
        writer = csv.DictWriter(sys.stdout, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@audit_app.command("verify")
def audit_verify(
    expect: Annotated[
        str | None,
        typer.Option("--expect", help="A last hash an earlier verify printed: the chain must still hold it."),
    ] = None,
) -> None:
    """Check the hash chain from the first entry: exit 1 naming the first entry edited, deleted or out of place."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        verdict = audit.verify(session)
        kept = expect is None or audit.holds(session, expect)
    if verdict.broken:
        raise VerdictsError(
            f"the audit trail was tampered with: {verdict.broken} (the {verdict.checked} before it are intact)"
        )
    if not kept:
        # A chain that holds but lost a noted hash was rewritten whole, from before that entry on.
        raise VerdictsError(
            f"--expect {expect!r}: no entry carries that hash: the trail was rewritten since it was noted "
            "(or the hash was copied wrong: compare it with where you noted it)"
        )
    out.print(f"The audit trail holds: {verdict.checked} entries, each chained to the one before.", highlight=False)
    err.print(f"Last hash: {verdict.head} (note it elsewhere: a later verify must still reach it)", highlight=False)
