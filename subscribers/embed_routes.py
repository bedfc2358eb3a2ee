"""The sign-up form made to sit in an iframe on the site's comparison pages: ``/embed/subscribe``.

Framable by ``EMBED_ORIGINS`` only (``frame-ancestors``; every other page refuses framing). It takes the same
steps as ``/subscribe`` (``signup_routes.accept_sign_up``), honeypot included, and needs no JavaScript.

No cookie, so no CSRF token: in a third-party iframe a cookie is blocked or ``SameSite``-stripped, and the
sign-up acts for nobody. A forged POST can do no more than a stranger typing the address: start a double
opt-in, within the limits, which only the mailbox's owner can finish.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import Response

from pipeline.web.pages import page
from subscribers.pages import request_evidence, see_other
from subscribers.signup_routes import CHECK_INBOX, Extras, accept_sign_up, signup_page

router = APIRouter(prefix="/embed")

SIGNED_UP = "/embed/subscribe/check-inbox"


def embed_csp(origins: list[str]) -> str:
    """The embed's policy: our other pages' (no scripts, forms to us only), framed by the listed sites too."""
    ancestors = " ".join(["'self'", *origins])
    return (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        f"frame-ancestors {ancestors}; base-uri 'none'"
    )


# Every answer under /embed/ gets its policy (``embed_csp``) from the app's SecurityHeaders.


def _embed_page(request: Request, status_code: int = 200, **context: object) -> Response:
    """The frame's message pages ("check your inbox", "too many"): the embed template without its form."""
    return page(request, "web/embed.html.j2", status_code, **context)


def _form(request: Request, *args: Any, **kwargs: Any) -> Response:
    return signup_page(request, "web/embed.html.j2", "/embed/subscribe", *args, title=None, text=None, **kwargs)


@router.get("/subscribe")
def embed_form(request: Request) -> Response:
    return _form(request)


@router.post("/subscribe")
def embed_subscribe(
    request: Request,
    background: BackgroundTasks,
    extras: Extras,
    email: Annotated[str, Form(max_length=400)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    website: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    if website:  # the honeypot, as on /subscribe
        return see_other(SIGNED_UP)
    refused = accept_sign_up(request, background, email, name, request_evidence(request, "embed"), *extras)
    if refused is None:
        return see_other(SIGNED_UP)  # still inside the frame
    if refused.field is None:
        return _embed_page(request, refused.status, title="Too many sign-ups", text=refused.text)
    return _form(request, refused.text, email, name, refused.status, extras)


@router.get("/subscribe/check-inbox")
def embed_signed_up(request: Request) -> Response:
    title, text = CHECK_INBOX
    return _embed_page(request, title=title, text=text.split("\n\n")[0])
