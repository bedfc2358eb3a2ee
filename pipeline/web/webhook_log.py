"""``/editor/webhooks``: the delivery log of the site's webhooks (``pipeline.store.site_events``), and "retry now"
for an event given up on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.site_events import queue_counts, recent_events, retry_now
from pipeline.web.auth import AsAdmin
from pipeline.web.pages import MAX_ID, actor_of, page, request_settings

router = APIRouter(prefix="/editor/webhooks")

#: The newest events the page lists (`verdicts webhooks list --limit` shows more).
SHOWN = 100


@router.get("")
def webhook_log(request: Request, csrf: AsAdmin, done: str = "", error: str | None = None) -> Response:
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        events, counts = recent_events(session, SHOWN), queue_counts(session)
    site = settings.site_webhook
    return page(
        request,
        "web/editor/webhooks.html.j2",
        404 if error else 200,
        csrf=csrf,
        events=events,
        counts=counts,
        shown=SHOWN,
        listening=site is not None,
        old_votes_endpoint=site is not None and site[2],
        event_types=sorted(settings.webhook_event_types),
        notice="Queued again: it goes before the events that came after it." if done == "retried" else None,
        error=error,
    )


@router.post("/{event_id}/retry")
def webhook_retry(request: Request, csrf: AsAdmin, event_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    with session_scope(request_settings(request).database_url) as session:
        queued = retry_now(session, event_id)
        if queued:
            audit.record(session, actor_of(request), "webhook.retry", detail={"event": event_id})
    if not queued:
        why = f"Event {event_id} is not a failed event (delivered, waiting for its turn, or gone): nothing was changed."
        return webhook_log(request, csrf, error=why)
    sender = request.app.state.site_webhooks
    if sender is not None:
        sender.wake()
    return RedirectResponse("/editor/webhooks?done=retried", status_code=303)
