"""`verdicts webhooks`: send the site's waiting events now, and read their delivery log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.console import out, ready
from pipeline.errors import ConfigurationError, InvalidInput
from pipeline.store.db import session_scope
from pipeline.store.models import WebhookEventStatus
from pipeline.store.site_events import recent_events

webhooks_app = typer.Typer(help="Webhooks to the site: events queued for it and their delivery.", no_args_is_help=True)


@webhooks_app.command("send")
def webhooks_send() -> None:
    """Send the due events now, in order (what the web app and the scheduler do on their own)."""
    from pipeline.delivery.site_webhooks import send_due

    settings = ready()
    if settings.site_webhook is None:
        raise ConfigurationError("no site listens: set VERDICTS_WEBHOOK_URL and VERDICTS_WEBHOOK_SECRET")
    out.print(send_due(settings).line(), highlight=False)


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[str | None, typer.Option(help="Only pending, delivered or failed events.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
) -> None:
    """The delivery log: each event's type, time, attempts, status, last error and next attempt."""
    choices = [s.value for s in WebhookEventStatus]
    if status is not None and status not in choices:
        raise InvalidInput(f"--status {status!r} is not a status: give one of {', '.join(choices)}")
    settings = ready()
    table = Table("id", "type", "created", "attempts", "status", "last answer", "next attempt")
    with session_scope(settings.database_url) as session:
        for event in recent_events(session, limit, WebhookEventStatus(status) if status else None):
            answer = event.last_error or (f"HTTP {event.last_status}" if event.last_status else "")
            table.add_row(
                event.uid,
                event.type,
                f"{event.created_at:%Y-%m-%d %H:%M:%S}",
                str(event.attempts),
                event.status.value,
                answer,
                f"{event.next_attempt_at:%Y-%m-%d %H:%M:%S}" if event.next_attempt_at else "",
            )
    out.print(table)
