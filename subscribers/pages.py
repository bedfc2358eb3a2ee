"""What the subscriber routers share: the signed link that opens a reader's page, what a bad one says, the
request as consent evidence, and the redirect after a form (``pipeline.web.pages`` is the same for the app).

No cookies and no logins: each private page is authorised by the signed token in its URL,
which is why the unsubscribe POST needs no CSRF token (RFC 8058 §3.2 forbids asking for one).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from pipeline.errors import NotFound
from pipeline.store.db import session_scope, write_scope
from pipeline.web.pages import message, request_settings
from subscribers import lookup
from subscribers.consent import Evidence
from subscribers.models import Subscriber
from subscribers.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, BadToken, read_timed_token, read_token


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def request_evidence(request: Request, source: str = "form") -> Evidence:
    settings = request_settings(request)
    return Evidence(
        source=source,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        wording_version=settings.consent_wording_version,
    )


def bad_link(request: Request, exc: Exception, purpose: str = CONFIRM) -> Response:
    if purpose in (UNSUBSCRIBE, PREFERENCES):
        # Someone trying to leave must not be steered to the sign-up page: name the ways out that work.
        mailto = request_settings(request).unsubscribe_mailto
        if not mailto:
            return message(
                request,
                "This link does not work",
                f"Sorry, {exc}. To leave the list, use the unsubscribe link in your latest email.",
                400,
            )
        return message(
            request,
            "This link does not work",
            f"Sorry, {exc}. To leave the list, use the unsubscribe link in "
            f"your latest email, or write to {mailto} with the subject “unsubscribe”.",
            400,
            link_url=f"mailto:{mailto}?subject=unsubscribe",
            link_text="Email us to unsubscribe",
        )
    return message(
        request,
        "This link does not work",
        f"Sorry, {exc}. You can sign up again, or use the link in your latest email.",
        400,
        link_url="/subscribe",
        link_text="Go to the sign-up page",
    )


def with_subscriber(
    request: Request,
    purpose: str,
    token: str,
    action: Callable[[Session, Subscriber], Response | Callable[[], Response]],
    *,
    max_age_seconds: int | None = None,
) -> Response:
    """``action`` on the reader a signed link names; a POST writes, in the writers' turn. An action may return
    its page as a function: it is then made after the commit, once the turn is over (the one-click unsubscribe
    of a burst after a send). With ``max_age_seconds`` the link is a timed one (the confirmation link)."""
    settings = request_settings(request)
    scope = write_scope if request.method == "POST" else session_scope
    secret = settings.secret_key.get_secret_value()
    try:
        subscriber_id = (
            read_token(secret, purpose, token)
            if max_age_seconds is None
            else read_timed_token(secret, purpose, token, max_age_seconds)
        )
        with scope(settings.database_url) as session:
            outcome = action(session, lookup.get_subscriber(session, subscriber_id))
        return outcome if isinstance(outcome, Response) else outcome()
    except BadToken as exc:
        return bad_link(request, exc, purpose)
    except NotFound:
        return message(
            request,
            "Nothing here any more",
            "This subscription no longer exists: the address was erased or never confirmed. We will not email it.",
            404,
            link_url="/subscribe",
            link_text="Sign up again",
        )
