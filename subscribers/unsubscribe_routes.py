"""One-click unsubscribe (RFC 8058): the page a link scanner may open safely, and the POST that leaves.

A mailbox provider's one-click POST gets its 200 directly; the page's button comes back to the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from pipeline.email.render import reader_url
from pipeline.store.models import saved_id
from pipeline.web.pages import message, page, request_settings
from subscribers import addresses, service
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.pages import request_evidence, see_other, with_subscriber
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE

router = APIRouter()


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, token: str) -> Response:
    """A human or a link scanner: show a button, change nothing."""

    def show(session: Session, sub: Subscriber) -> Response:
        return _unsubscribe_view(request, sub, done=sub.status is SubscriberStatus.unsubscribed)

    return with_subscriber(request, UNSUBSCRIBE, token, show)


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request, token: str, one_click: Annotated[str, Form(alias="List-Unsubscribe", max_length=100)] = ""
) -> Response:
    """RFC 8058 one-click (a mailbox provider: 200 directly) or the page's button (back to the page, which now
    says it is done: a reload repeats nothing). Idempotent either way."""
    trigger = "one-click" if one_click == "One-Click" else "page"

    def leave(session: Session, sub: Subscriber) -> Callable[[], Response]:
        service.unsubscribe(
            session,
            sub,
            trigger=trigger,
            evidence=request_evidence(request, "email" if trigger == "one-click" else "page"),
        )
        return lambda: (
            _unsubscribe_view(request, sub, done=True) if trigger == "one-click" else see_other(request.url.path)
        )

    response = with_subscriber(request, UNSUBSCRIBE, token, leave)
    if response.status_code == 404:  # erased: the address is suppressed already, so the request has its effect
        return message(request, "You’re unsubscribed", "This address gets nothing more from us.")
    return response


def _unsubscribe_view(request: Request, sub: Subscriber, *, done: bool) -> Response:
    settings = request_settings(request)
    return page(
        request,
        "web/unsubscribe.html.j2",
        done=done,
        email_masked=addresses.mask(sub.email),
        action_url=request.url.path,
        preferences_url=reader_url(settings, PREFERENCES, saved_id(sub)),
    )
