"""What every router shares: the page renderer, the message page, the id bound and the newsletter CSP.

A module of its own so that the routers never import the app (``app.py`` imports them all, at the top).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from pipeline.config import Settings
from pipeline.email.render import jinja_env
from pipeline.store.models import Role

#: The largest id a column holds (PostgreSQL's integer): routes bound their ids by it.
MAX_ID = 2**31 - 1

#: For a newsletter shown as a page (editor preview, public web version): its inline styles and
#: https images, nothing else — no scripts, no forms, framed only by our own pages.
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'"
)


#: Who acts when the editor pages are opened with the one shared password (no personal accounts).
SHARED_EDITOR = "editor (shared password)"


def actor_of(request: Request) -> str:
    """Who is acting, as the audit trail names them: the logged-in account (``request.state.actor``, set by the
    editor login's guard) or, in shared-password mode, ``SHARED_EDITOR``."""
    actor = getattr(request.state, "actor", None)
    return actor if isinstance(actor, str) and actor else SHARED_EDITOR


def can(request: Request, needed: str) -> bool:
    """Whether the logged-in editor's role covers ``needed``: pages show only the buttons it may use (the
    routes refuse the rest anyway)."""
    role = getattr(request.state, "role", None)
    return isinstance(role, Role) and role.covers(Role(needed))


def request_settings(request: Request) -> Settings:
    """The settings the app was created with (``create_app`` puts them on ``app.state``)."""
    settings: Settings = request.app.state.settings
    return settings


def page(request: Request, template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    """Render one of `templates/web/` with the values every page shows."""
    settings = request_settings(request)
    html = (
        jinja_env(settings.templates_dir)
        .get_template(template)
        .render(
            brand_name=settings.from_name,
            site_url=settings.base_url,
            postal_address=settings.postal_address,
            can=lambda needed: can(request, needed),
            acting_as=getattr(request.state, "actor", None),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code)


def message(
    request: Request,
    title: str,
    text: str,
    status_code: int = 200,
    link_url: str | None = None,
    link_text: str | None = None,
) -> HTMLResponse:
    """The one-message page: a title, a paragraph and at most one link onwards."""
    return page(
        request, "web/message.html.j2", status_code, title=title, message=text, link_url=link_url, link_text=link_text
    )


def is_https(request: Request) -> bool:
    """Whether cookies are ``Secure`` and HSTS is sent: an https ``BASE_URL``, or a request that came over
    https (as a trusted proxy's ``X-Forwarded-Proto`` says; anyone else's is ignored)."""
    return request_settings(request).base_url.startswith("https://") or request.url.scheme == "https"
