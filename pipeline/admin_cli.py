"""Operator commands around the pipeline: provider checks, the votes export, editor passwords."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.console import err, load_settings, out, progress, ready
from pipeline.db import session_scope
from pipeline.errors import VerdictsError
from pipeline.files import written
from pipeline.providers import get_fallback, get_provider

providers_app = typer.Typer(help="Email providers.", no_args_is_help=True)


@providers_app.command("check")
def providers_check() -> None:
    """Prove the provider configuration works with one cheap, harmless API call (nothing is sent)."""
    settings = load_settings()
    names = [settings.provider] + [settings.fallback_provider] * (settings.fallback_provider not in (None, settings.provider))
    for name in names:
        provider = get_fallback(settings) if name != settings.provider else get_provider(settings)
        try:
            out.print(f"{name}: ok — {provider.check()}", highlight=False)
        finally:
            provider.close()


votes_app = typer.Typer(help="Community votes readers cast from the email.", no_args_is_help=True)


@votes_app.command("export")
def votes_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Votes per comparison and tool (imported, readers', combined, ship %): for the site. No reader data."""
    import csv
    import io
    import json

    from pipeline.votes import EXPORT_COLUMNS, export_rows

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
        writer.writerows(rows)
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

    # Prompts go to the terminal, the hash alone to stdout (one line, never wrapped): `verdicts editor hash-password > file` works.
    # From a pipe (a deploy script: `printf '%s\n' "$PASSWORD" | verdicts editor hash-password`), its first line, asked once.
    piped = not sys.stdin.isatty()
    password = sys.stdin.readline().rstrip("\r\n") if piped else getpass.getpass("Editor password: ")
    if len(password) < 12:
        raise typer.BadParameter("use at least 12 characters")
    if not piped and getpass.getpass("Again: ") != password:
        raise typer.BadParameter("the two passwords differ")
    typer.echo(hash_password(password))


database_app = typer.Typer(help="The database behind the site.", no_args_is_help=True)


@database_app.command("copy")
def database_copy(target: Annotated[str, typer.Argument(help="The new database's URL, e.g. postgresql+psycopg://user:pass@host/verdicts.")]) -> None:
    """Copy the whole site (readers, consent trail, suppressions, issues, ledger, votes) to a new,
    empty database, ids kept: to move from SQLite to PostgreSQL as the list grows. Stop the
    scheduler and the web app first; the source is only read."""
    from pipeline.config import database_url
    from pipeline.copying import copy_database, written_since
    from pipeline.db import shown_url

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
        err.print("interrupted: nothing was copied; the target has its tables and no rows: run the copy again", highlight=False)
        raise typer.Exit(130) from None
    out.print(f"Copied {sum(copied.values()):,} rows to {shown_url(target_url)}: "
              + ", ".join(f"{n:,} {name}" for name, n in copied.items() if n) + ".", highlight=False)
    late = written_since(settings.database_url, copied)
    if late:
        err.print(f"warning: {late:,} rows were written to the old database during the copy (sign-ups, votes, a send) and are "
                  "not in the new one: stop the web app and the scheduler, empty or re-create the new database, and copy again",
                  highlight=False)
        raise typer.Exit(1)
    out.print("Point VERDICTS_DATABASE_URL at it to run the site there; the old database is unchanged.", highlight=False)
