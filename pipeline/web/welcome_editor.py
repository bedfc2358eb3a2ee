"""The editor's view of the welcome email: the preview (sandboxed, as an issue's, 600/375 px and dark mode),
its text twin and lint, how many readers it reached, and a ``[TEST]`` copy to the editors' addresses."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import col, func, select

from pipeline.delivery.welcome import send_test_welcome
from pipeline.email.personal import html_values
from pipeline.email.render import Recipient
from pipeline.email.welcome import render_welcome, welcome_values
from pipeline.errors import VerdictsError
from pipeline.store.db import session_scope
from pipeline.store.models import Welcome
from pipeline.web.auth import AsEditor, Editor
from pipeline.web.editor import DARK_MODE, refused_test_addresses
from pipeline.web.pages import EMAIL_CSP, page, request_settings

router = APIRouter(prefix="/editor/welcome")

#: The preview's reader: links that act for nobody (reader 0), as in an issue's preview.
SAMPLE = Recipient(0, "preview@example.com", "Reader")


@router.get("")
def welcome_page(
    request: Request,
    csrf: Editor,
    width: int = 600,
    dark: bool = False,
    done: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        rendered = render_welcome(session, settings)
        counts = dict(session.exec(select(col(Welcome.status), func.count()).group_by(col(Welcome.status))).all())
    return page(
        request,
        "web/editor/welcome.html.j2",
        status_code,
        csrf=csrf,
        subject=rendered.body.subject,
        sender=f"{settings.from_name} <{settings.from_email}>",
        text=rendered.body.text.fill(welcome_values(settings, SAMPLE, rendered.latest_week)),
        lint=rendered.lint,
        counts={status.value: n for status, n in counts.items()},
        width=375 if width == 375 else 600,
        dark=dark,
        editor_emails=settings.editor_addresses,
        notice="Test copy sent." if done == "tested" else None,
        error=error,
    )


@router.get("/preview")
def welcome_preview(request: Request, _: Editor, dark: bool = False) -> Response:
    """The email itself, for the sandboxed iframe: exactly a reader's HTML, under the email CSP."""
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        rendered = render_welcome(session, settings)
    html = rendered.body.html.fill(html_values(welcome_values(settings, SAMPLE, rendered.latest_week)))
    if dark:
        html = re.sub(r"</head>", DARK_MODE + "</head>", html, count=1)
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_CSP})


@router.post("/test-send")
async def welcome_test_send(request: Request, csrf: AsEditor) -> Response:
    """``[TEST]`` copies: no ledger row, so no reader's welcome is spent; a refusal changes nothing and says why."""
    form = await request.form()
    settings = request_settings(request)
    chosen = [str(a) for a in form.getlist("to")]
    why = refused_test_addresses(chosen, settings)
    if why is None:
        try:
            with session_scope(settings.database_url) as session:
                failed = [f"{a}: {o.error}" for a, o in send_test_welcome(session, settings, chosen) if not o.ok]
            if failed:
                why = "the test copy was not sent: " + "; ".join(failed)
        except VerdictsError as exc:
            why = str(exc)
    if why is not None:
        return welcome_page(request, csrf, error=why, status_code=422)
    return RedirectResponse("/editor/welcome?done=tested", status_code=303)
