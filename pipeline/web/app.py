"""The web app: subscriber pages, the editor, the public archive, provider webhooks. Safe defaults everywhere:
security headers on every answer, friendly error pages, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pipeline.config import Settings, get_settings
from pipeline.delivery.site_webhooks import site_webhook_sender
from pipeline.errors import NotFound
from pipeline.logs import mask_tokens
from pipeline.web.accounts import router as accounts_router
from pipeline.web.api import field_problem, generic_refusal
from pipeline.web.api import router as site_api_router
from pipeline.web.api_docs import router as api_docs_router
from pipeline.web.api_tokens import router as api_tokens_router
from pipeline.web.archive import RecentPages
from pipeline.web.archive import router as archive_router
from pipeline.web.auth import EditorRequired, FormExpired, login_failures, login_redirect
from pipeline.web.auth import router as auth_router
from pipeline.web.bodylimit import BodyLimit
from pipeline.web.clicks import network_bursts
from pipeline.web.clicks import router as clicks_router
from pipeline.web.editor import router as editor_router
from pipeline.web.growth import router as growth_router
from pipeline.web.newsroom import router as newsroom_router
from pipeline.web.ops import router as ops_router
from pipeline.web.pages import actor_of, is_https, message
from pipeline.web.problems import ApiProblem
from pipeline.web.report import router as report_router
from pipeline.web.viewer import EnrolFirst, RoleRequired
from pipeline.web.votes import FreshSplits
from pipeline.web.votes import router as votes_router
from pipeline.web.webhook_log import router as webhook_log_router
from pipeline.web.webhooks import router as webhook_router
from pipeline.web.welcome_editor import router as welcome_editor_router
from subscribers.api_routes import MAX_BODY, ApiCors, generic_problem, is_api
from subscribers.api_routes import router as api_router
from subscribers.embed_routes import embed_csp
from subscribers.routes import router as subscriber_router
from subscribers.signup_routes import signup_limits

log = logging.getLogger("verdicts.web")

_ERROR_PAGES = {
    400: ("Bad request", "Something in that request did not look right."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Not allowed", "This page does not accept that kind of request."),
    413: ("Too large", "That request was too large."),
    429: ("Too many attempts", "Please wait a while and try again."),
}


def field_problems(exc: RequestValidationError) -> str:
    """Which fields of a refused request were wrong, their values and what they must be: one line each."""
    lines = []
    for error in exc.errors()[:5]:
        where, name = (error["loc"][0], error["loc"][-1]) if error.get("loc") else ("request", "?")
        given = error.get("input")
        shown = f" (it was {str(given)[:60]!r})" if isinstance(given, (str, int, float)) else ""
        lines.append(f"The {where} field “{name}”: {error.get('msg', 'not valid')}{shown}.")
    return "\n".join(lines) + "\n\nCorrect it and send it again; nothing was changed."


class BadField(HTTPException):
    """A field no route could use, whatever it is for: the page names it and says the fix."""

    def __init__(self, text: str) -> None:
        super().__init__(400, text)


async def printable_fields(request: Request) -> None:
    """Every route's guard: no NUL character in a path, query or form field. No field means one (no text in the
    database can hold it: PostgreSQL refuses it, a 500 at the first query); a 400 names the field instead."""
    form = await request.form() if request.method == "POST" else None
    fields = [
        ("path", request.path_params.items()),
        ("query", request.query_params.multi_items()),
        ("form", form.multi_items() if form is not None else []),
    ]
    for where, items in fields:
        for name, value in items:
            if isinstance(value, str) and "\0" in value:
                raise BadField(
                    f"The {where} field “{name[:60]}” contains a NUL character (\\0), which no field "
                    f"takes: {value[:60]!r}. Remove it and send again; nothing was changed."
                )


#: On every answer. No scripts at all; inline styles only (the pages carry one <style> block). Our URLs carry
#: tokens: never leak them to another site through Referer.
SECURITY_HEADERS = (
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
    ("cache-control", "no-store"),
)
HSTS = ("strict-transport-security", "max-age=31536000; includeSubDomains")


def _security_headers(headers: MutableHeaders, https: bool) -> None:
    """What a page sets itself (its own CSP, caching) stays; the rest comes from here."""
    framed_elsewhere = _framed_elsewhere(headers.get("content-security-policy", ""))
    for name, value in (*SECURITY_HEADERS, HSTS) if https else SECURITY_HEADERS:
        if not (framed_elsewhere and name == "x-frame-options"):
            headers.setdefault(name, value)


def _framed_elsewhere(policy: str) -> bool:
    """A page whose own CSP lets other sites frame it (the embedded sign-up form): no X-Frame-Options, which
    cannot name those sites and, in a browser that obeys it over the CSP, would refuse them."""
    ancestors = [d.split()[1:] for d in policy.split(";") if d.split()[:1] == ["frame-ancestors"]]
    return bool(ancestors) and ancestors[0] != ["'self'"]


class SecurityHeaders:
    """Pure ASGI middleware: the headers go onto the response's start message. (Starlette's
    ``@app.middleware("http")`` passed every body through a stream of its own, a quarter of the cost
    of serving a cached web version.)"""

    def __init__(self, app: ASGIApp, *, https_site: bool, embed_policy: str) -> None:
        self.app = app
        self.https_site = https_site
        self.embed_policy = embed_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = self.https_site or scope.get("scheme") == "https"
        # Every answer under /embed/ (a 400, a 413, an error page) shows inside the partner's frame, not only
        # the form's own pages: else the framed form turns blank at its first refusal.
        embedded = scope["path"].startswith("/embed/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if embedded:
                    headers["content-security-policy"] = self.embed_policy
                _security_headers(headers, https)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _api_refusal(request: Request, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """The app's own refusals (size, method, path) under /api/: problems, each API's in its own words."""
    if request.url.path.startswith("/api/v1/subscribe"):
        return generic_problem(status, headers)
    return generic_refusal(status, headers)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown the webhook sender finishes the request in hand and stops: the process leaves no event half
    posted, and an app that is done (a worker restarting, a test) leaves no thread polling a database."""
    yield
    sender = app.state.site_webhooks
    if sender is not None:
        await run_in_threadpool(sender.stop)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # However the app is started (`verdicts serve`, its workers, a bare `uvicorn --factory`): never with a weak key.
    settings.require_real_secret()
    app = FastAPI(title="Weekly AI Tool Verdicts", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.state.settings = settings
    # Made here, once per app (each web process has its own): no request races another to make them.
    app.state.login_failures = login_failures(settings)
    app.state.signup_limits = signup_limits(settings)
    app.state.web_versions = RecentPages()
    app.state.fresh_splits = FreshSplits()
    app.state.site_webhooks = site_webhook_sender(settings)
    app.state.click_bursts = network_bursts(settings.database_url)
    # Added before the headers middleware, which wraps it: its early 413 gets the security headers too.
    app.add_middleware(
        BodyLimit,
        limits=[
            ("/webhooks/", int(settings.webhook_max_body_mb * 1024 * 1024)),
            ("/api/v1/comparisons", int(settings.import_max_mb * 1024 * 1024)),  # as large as an imported file
            ("/api/", MAX_BODY),
        ],
        default=settings.form_max_body_kb * 1024,
        too_large=lambda request: (
            _api_refusal(request, 413) if is_api(request.url.path) else message(request, *_ERROR_PAGES[413], 413)
        ),
    )
    app.add_middleware(ApiCors, origins=settings.embed_origin_list)

    app.add_middleware(
        SecurityHeaders,
        https_site=settings.base_url.startswith("https://"),
        embed_policy=embed_csp(settings.embed_origin_list),
    )

    if settings.trusted_proxy_networks:
        # Outermost, so every layer sees the client and scheme the proxy reported. Only from the listed
        # proxies (loopback too is trusted only if listed: anyone on the host could claim any address),
        # and the right-most address no trusted proxy added: a client cannot prepend its own.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_networks)

    @app.exception_handler(EditorRequired)
    async def editor_required(request: Request, exc: EditorRequired) -> Response:
        if exc.status_code == 303:
            return login_redirect(request)
        # A form posted after the session ended (or from a page opened before a log-out): back to its page
        # after logging in.
        back = request.url.path.removeprefix("/editor/issues/").split("/")[0]
        return message(
            request,
            "Your editor session has ended",
            f"Editor sessions last {settings.editor_session_hours} hours, or end with a log-out or a new password. "
            "Nothing was changed: log in again, then make the change again.",
            403,
            link_url="/editor/login" + (f"?next=/editor/issues/{back}" if back.isdigit() else ""),
            link_text="Log in",
        )

    @app.exception_handler(RoleRequired)
    async def role_required(request: Request, exc: RoleRequired) -> Response:
        return message(
            request,
            "Not allowed for your role",
            f"This needs the {exc.detail} role; you are logged in as {actor_of(request)}. Nothing was changed: "
            "ask an admin if you need it.",
            403,
            link_url="/editor",
            link_text="Back to the issues",
        )

    @app.exception_handler(EnrolFirst)
    async def enrol_first(request: Request, exc: EnrolFirst) -> Response:
        if request.method == "GET":
            return RedirectResponse("/editor/account?enrol=1", status_code=303)
        return message(
            request,
            "Set up your second factor first",
            "Admins of this site must use a one-time code app (VERDICTS_REQUIRE_2FA). Nothing was changed.",
            403,
            link_url="/editor/account",
            link_text="Set it up",
        )

    @app.exception_handler(FormExpired)
    async def form_expired(request: Request, exc: FormExpired) -> Response:
        return message(
            request,
            "This form has expired",
            "The page was opened in an earlier session. Reload it and try again; nothing was changed.",
            403,
            link_url="/editor",
            link_text="Back to the issues",
        )

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        title, text = _ERROR_PAGES[404]
        return message(request, title, str(exc) or text, 404)

    @app.exception_handler(BadField)
    async def bad_field(request: Request, exc: BadField) -> Response:
        return message(request, _ERROR_PAGES[400][0], exc.detail, 400)

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> Response:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if is_api(request.url.path):
            return _api_refusal(request, exc.status_code, exc.headers)
        title, text = _ERROR_PAGES.get(exc.status_code, ("Error", "Something went wrong."))
        response = message(
            request, title, text, exc.status_code, link_url="/subscribe", link_text="Go to the sign-up page"
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        if is_api(request.url.path):
            return field_problem(exc)
        return message(request, _ERROR_PAGES[400][0], field_problems(exc), 400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The path's token acts for a reader: masked, as in the access lines.
        log.exception("unhandled error on %s %s", request.method, mask_tokens(request.url.path))
        response = message(
            request, "Something went wrong", "We could not finish that. Please try again in a few minutes.", 500
        )
        _security_headers(response.headers, is_https(request))  # outside the middleware: it wraps the routes only
        return response

    # The webhooks check their providers' payloads themselves.
    app.include_router(webhook_router)
    app.include_router(api_router)  # JSON: it checks its own body (and a NUL is refused by its field's check)
    app.include_router(site_api_router)  # JSON too: the import format refuses control characters
    app.include_router(api_docs_router)
    for router in (
        ops_router,
        subscriber_router,
        auth_router,
        editor_router,
        newsroom_router,
        accounts_router,
        growth_router,
        report_router,
        clicks_router,
        archive_router,
        votes_router,
        api_tokens_router,
    ):
        app.include_router(router, dependencies=[Depends(printable_fields)])
    app.include_router(welcome_editor_router, dependencies=[Depends(printable_fields)])
    app.include_router(webhook_log_router, dependencies=[Depends(printable_fields)])
    return app
