"""Operator commands around the pipeline: provider checks, the votes export, editor passwords."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.console import err, load_settings, out, progress, ready
from pipeline.config import Settings
from pipeline.delivery.providers import Provider, get_fallback, get_provider
from pipeline.errors import VerdictsError
from pipeline.files import written
from pipeline.store.db import session_scope

providers_app = typer.Typer(help="Email providers.", no_args_is_help=True)


@providers_app.command("check")
def providers_check() -> None:
    """Prove the provider configuration works with one cheap, harmless API call (nothing is sent).
    A key that may only send passes with a warning saying what could not be verified."""
    settings = load_settings()
    checks: list[tuple[str, Callable[[Settings], Provider | None]]] = [
        (settings.provider, get_provider),
        (settings.fallback_provider or "", get_fallback),
    ]
    for name, make in checks:
        provider = make(settings)
        if provider is None:  # no fallback configured, or the same provider again
            continue
        try:
            found = provider.check()
        finally:
            provider.close()
        out.print(f"{name}: ok — {found.summary}", highlight=False)
        if found.unverified:
            err.print(f"warning: {name}: {found.unverified}", highlight=False, soft_wrap=True)


votes_app = typer.Typer(help="Community votes readers cast from the email.", no_args_is_help=True)


@votes_app.command("export")
def votes_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Votes per comparison and tool (imported, readers', combined, ship %): for the site. No reader data."""
    import csv
    import io
    import json

    from pipeline.content.votes import EXPORT_COLUMNS, export_rows
    from subscribers.csvio import spreadsheet_safe

    if fmt not in ("csv", "json"):
        raise typer.BadParameter("--format is csv or json")
    settings = ready()
    with session_scope(settings.database_url) as session:
        rows = export_rows(session)
    if fmt == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        # Titles and names come from the site's files: none may run as a formula in the spreadsheet it is opened in.
        writer.writerows({k: spreadsheet_safe(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows)
        text = buffer.getvalue()
    if out_file:
        with written(out_file) as fh:
            fh.write(text)
        err.print(f"Wrote {len(rows)} rows to {out_file}.", highlight=False)
    else:
        typer.echo(text, nl=False)


editor_app = typer.Typer(help="The editor web pages.", no_args_is_help=True)


@editor_app.command("hash-password")
def editor_hash_password() -> None:
    """Print a hash for VERDICTS_EDITOR_PASSWORD_HASH (the password itself is never stored)."""
    import getpass

    from pipeline.web.auth import hash_password

    # Prompts go to the terminal, the hash alone to stdout (one line, never wrapped):
    # `verdicts editor hash-password > file` works. From a pipe (a deploy script:
    # `printf '%s\n' "$PASSWORD" | verdicts editor hash-password`), its first line, asked once.
    piped = not sys.stdin.isatty()
    password = sys.stdin.readline().rstrip("\r\n") if piped else getpass.getpass("Editor password: ")
    if len(password) < 12:
        raise typer.BadParameter("use at least 12 characters")
    if not piped and getpass.getpass("Again: ") != password:
        raise typer.BadParameter("the two passwords differ")
    typer.echo(hash_password(password))


database_app = typer.Typer(help="The database behind the site.", no_args_is_help=True)


@database_app.command("copy")
def database_copy(
    target: Annotated[
        str, typer.Argument(help="The new database's URL, e.g. postgresql+psycopg://user:pass@host/verdicts.")
    ],
) -> None:
    """Copy the whole site (readers, consent trail, suppressions, issues, ledger, votes) to a new,
    empty database, ids kept: to move from SQLite to PostgreSQL as the list grows. Stop the
    scheduler and the web app first; the source is only read."""
    from pipeline.setting_checks import database_url
    from pipeline.store.copying import copy_database, written_since
    from pipeline.store.db import shown_url

    settings = ready()
    try:
        target_url = database_url(target)
    except ValueError as exc:
        raise VerdictsError(f"the target URL: {exc}") from None
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # a lost connection is said once, in our words
    try:
        with progress("Copying rows") as on_progress:
            copied = copy_database(settings.database_url, target_url, on_progress)
    except KeyboardInterrupt:
        err.print(
            "interrupted: nothing was copied; the target has its tables and no rows: run the copy again",
            highlight=False,
        )
        raise typer.Exit(130) from None
    out.print(
        f"Copied {sum(copied.values()):,} rows to {shown_url(target_url)}: "
        + ", ".join(f"{n:,} {name}" for name, n in copied.items() if n)
        + ".",
        highlight=False,
    )
    late = written_since(settings.database_url, copied)
    if late:
        err.print(
            f"warning: {late:,} rows were written to the old database during the copy (sign-ups, votes, a send) "
            "and are not in the new one: stop the web app and the scheduler, empty or re-create the new database, "
            "and copy again",
            highlight=False,
        )
        raise typer.Exit(1)
    out.print(
        "Point VERDICTS_DATABASE_URL at it to run the site there; the old database is unchanged.", highlight=False
    )


@database_app.command("backup")
def database_backup(
    file: Annotated[Path, typer.Argument(help="The copy to write, e.g. /var/backups/verdicts/before-upgrade.db.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing FILE, once the copy is checked.")] = False,
) -> None:
    """A consistent copy of the SQLite database while the site runs, checked before it is kept. On PostgreSQL it
    prints the pg_dump command to run instead and exits 1 (nothing was backed up). Restore: stop the services,
    copy FILE back in place of the database, run `verdicts init`, start them (deploy/README.md)."""
    from pipeline.store.backup import backup_database
    from pipeline.store.db import shown_url

    settings = load_settings()  # not ready(): a backup before `verdicts init` upgrades the schema is the point
    done = backup_database(settings.database_url, file, force=force)
    out.print(
        f"Backed up {shown_url(settings.database_url)} (schema {done.revision}) to {done.path}: "
        f"{done.bytes / 1024 / 1024:,.1f} MB in {done.seconds:.1f} s, integrity check ok.",
        highlight=False,
    )
