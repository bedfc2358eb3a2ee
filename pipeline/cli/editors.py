"""`verdicts editor add|list|disable|reset`: personal editor accounts from the command line (the first admin is
made here; admins then manage the rest in the editor too)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import col, select

from pipeline.cli.admin import editor_app
from pipeline.cli.audit import cli_actor
from pipeline.cli.console import out, ready
from pipeline.ops import accounts
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import EditorAccount

__all__ = ["editor_app"]


@editor_app.command("add")
def editor_add(
    email: str,
    role: Annotated[str, typer.Option("--role", help="admin, editor or reviewer.")] = "editor",
    send: Annotated[
        bool, typer.Option("--send", help="Email the link through the provider instead of printing it.")
    ] = False,
) -> None:
    """Make a personal editor account and give its owner a one-time link to set their password. From the first
    account on, the shared VERDICTS_EDITOR_PASSWORD no longer logs anyone in."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        account = accounts.add_account(session, email, accounts.parse_role(role), actor=cli_actor())
        link = accounts.password_link(settings, account)
        if send:
            accounts.send_link(settings, account, welcome=True)  # refused: the account is not made either
    out.print(f"Added {account.email} ({account.role.value}).", highlight=False)
    if send:
        out.print(f"The set-password link is emailed to {account.email}.", highlight=False)
    else:
        out.print(f"Set-password link (works once, for {accounts.LINK_HOURS} hours):", highlight=False)
        typer.echo(link)


@editor_app.command("list")
def editor_list() -> None:
    """Every editor account: role, second factor, last login, status."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        rows = session.exec(select(EditorAccount).order_by(col(EditorAccount.email))).all()
    table = Table("Email", "Role", "2FA", "Last login (UTC)", "Status")
    for a in rows:
        status = f"disabled {a.disabled_at:%Y-%m-%d}" if a.disabled_at else "active" if a.password_hash else "invited"
        last = f"{a.last_login_at:%Y-%m-%d %H:%M}" if a.last_login_at else "never"
        table.add_row(a.email, a.role.value, "on" if a.totp_secret else "off", last, status)
    if not rows:
        out.print("No editor accounts: the shared password (VERDICTS_EDITOR_PASSWORD) is in use.", highlight=False)
        return
    out.print(table)


@editor_app.command("disable")
def editor_disable(email: str) -> None:
    """Lock an account out: its open sessions end at once. The last admin cannot be disabled."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        account = accounts.find_account(session, email)
        accounts.disable(session, account, actor=cli_actor())
    out.print(f"{account.email} is disabled; their sessions have ended.", highlight=False)


@editor_app.command("reset")
def editor_reset(
    email: str,
    second_factor: Annotated[
        bool,
        typer.Option(
            "--2fa", help="Also clear their second factor (a lost authenticator): they enrol again after logging in."
        ),
    ] = False,
) -> None:
    """Email the account a one-time link to set a new password (its current password works until then)."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        account = accounts.find_account(session, email)
        if account.disabled_at is not None:
            raise typer.BadParameter(f"{account.email} is disabled: no reset link is sent")
        if second_factor:
            accounts.clear_second_factor(session, account, actor=cli_actor())
        audit.record(session, cli_actor(), "account.reset", detail={"account": account.email})
        accounts.send_link(settings, account, welcome=False)  # refused: the reset is not on the trail either
    cleared = " Their second factor is cleared: they enrol again after logging in." if second_factor else ""
    out.print(f"A reset link is emailed to {account.email}.{cleared}", highlight=False)
