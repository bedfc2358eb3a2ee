"""`verdicts api-token`: make, list and revoke the tokens the site's scripts call the HTTP API with (an admin's job).

A new token is printed once, to stdout alone (a script can capture it); only its hash is stored.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.audit import cli_actor
from pipeline.cli.console import err, out, ready
from pipeline.ops.api_tokens import SCOPES, create_token, list_tokens, revoke
from pipeline.store.db import session_scope

api_token_app = typer.Typer(help="API tokens for the site's scripts (admins).", no_args_is_help=True)


@api_token_app.command("create")
def api_token_create(
    name: Annotated[str, typer.Argument(help="Who uses it, e.g. site-deploy.")],
    scope: Annotated[list[str], typer.Option("--scope", help=f"Repeat for each: {', '.join(SCOPES)}.")],
) -> None:
    """Make a token and print it once: copy it now, it cannot be shown again."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        made = create_token(session, name, scope, cli_actor())
    err.print(f"API token {made.row.name!r} ({', '.join(made.row.scopes)}); it is shown this once:", highlight=False)
    out.print(made.secret, highlight=False, soft_wrap=True)


@api_token_app.command("list")
def api_token_list() -> None:
    """Every token: name, first characters, scopes, who made it, when, last use, revoked."""
    settings = ready()
    table = Table("name", "starts with", "scopes", "made by", "made", "last used", "revoked")
    with session_scope(settings.database_url) as session:
        for t in list_tokens(session):
            table.add_row(
                t.name,
                f"{t.prefix}…",
                ", ".join(t.scopes),
                t.created_by,
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
            )
    out.print(table)


@api_token_app.command("revoke")
def api_token_revoke(
    which: Annotated[str, typer.Argument(help="The token's name, or its first characters as listed (vt_…).")],
) -> None:
    """Revoke a token: requests with it are refused (401) from now on."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        row = revoke(session, which.removesuffix("…"), cli_actor())
    out.print(f"Revoked API token {row.name!r} ({row.prefix}…).", highlight=False)
