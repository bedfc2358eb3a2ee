"""`verdicts comparisons`: import the site's comparisons (all files checked before anything is written) and list
them with their panel and community figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.audit import cli_actor
from pipeline.cli.console import out, parse_moment, ready
from pipeline.content import importing
from pipeline.content.splits import panel_split
from pipeline.email.render import community_of, tool_votes
from pipeline.store import audit
from pipeline.store.db import session_scope

comparisons_app = typer.Typer(help="Import and list comparisons.", no_args_is_help=True)


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
        outcomes = Counter(importing.save(session, items).values())
        added, updated, unchanged = (outcomes[o] for o in importing.Outcome)
        detail = {"created": added, "updated": updated, "unchanged": unchanged, "slugs": [item.slug for item in items]}
        audit.record(session, cli_actor(), "comparisons.import", detail=detail)
    out.print(f"Imported {len(items)} comparison(s): {added} new, {updated} updated, {unchanged} unchanged.")


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
            panel = ", ".join(f"{t.name} {panel_split(c, t).label()}" for t in c.tools)
            community = ", ".join(f"{t.name} {community_of(t, votes).label()}" for t in c.tools)
            table.add_row(c.slug, c.title, f"{c.published_at:%Y-%m-%d %H:%M}", panel, community)
    out.print(table)
