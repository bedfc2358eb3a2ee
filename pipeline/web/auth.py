"""Editor login: one shared password (or its PBKDF2 hash), sessions kept on the server, a
CSRF token per session, and a lock-out after repeated failures from one address.

The session cookie carries only a random id (``HttpOnly``, ``SameSite=Strict``, ``Secure`` on
https); the database row it names holds the expiry and the CSRF token, so every web process
honours it and logging out ends it everywhere, copies of the cookie included. Every editor form
carries the session's CSRF token; a POST without it is refused even with a valid cookie. The
lock-out is counted in the database too: failures on every process add up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import col
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.store.db import get_engine
from pipeline.store.models import EditorSession, utcnow
from pipeline.web.pages import is_https, page, request_settings
from pipeline.web.ratelimit import SlidingWindow, client_key

SESSION_COOKIE = "verdicts_editor"
LOGIN_COOKIE = "verdicts_login"
PBKDF2_ITERATIONS = 600_000

router = APIRouter()


class FormExpired(HTTPException):
    """A POST whose CSRF token is not this session's (an old tab, or a forged request)."""

    def __init__(self) -> None:
        super().__init__(403)


class EditorRequired(HTTPException):
    """Raised by the guard; the app answers a GET with the login page, anything else with 403."""

    def __init__(self, status_code: int = 403) -> None:
        super().__init__(status_code)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two strings of any characters: ``hmac.compare_digest`` refuses (TypeError, a
    500) a str with non-ASCII characters, and a form field holds whatever a client sent."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` for ``VERDICTS_EDITOR_PASSWORD_HASH``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def password_ok(settings: Settings, given: str) -> bool:
    if settings.editor_password_hash:
        try:
            scheme, iterations, salt, expected = settings.editor_password_hash.split("$")
            digest = hashlib.pbkdf2_hmac(
                "sha256", given.encode("utf-8", "surrogatepass"), base64.b64decode(salt), int(iterations)
            )
        except ValueError:
            return False
        return scheme == "pbkdf2_sha256" and hmac.compare_digest(digest, base64.b64decode(expected))
    if settings.editor_password:
        return same_secret(given, settings.editor_password.get_secret_value())
    return False


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt=f"editor-{purpose}")


def login_failures(settings: Settings) -> SlidingWindow:
    """Failed editor logins per client, counted in the database: one per app, made by ``create_app``."""
    return SlidingWindow(settings.database_url, "login", settings.editor_lockout_attempts, 15 * 60)


def _failures(request: Request) -> SlidingWindow:
    failures: SlidingWindow = request.app.state.login_failures
    return failures


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_csrf(request: Request) -> str | None:
    """The CSRF token of a valid editor session, or None."""
    settings = request_settings(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with get_engine(settings.database_url).connect() as conn:
        row = conn.execute(
            sa.select(
                col(EditorSession.csrf),
                col(EditorSession.password_fingerprint),
                col(EditorSession.created_at),
                col(EditorSession.expires_at),
            ).where(col(EditorSession.token_hash) == _token_hash(token))
        ).first()
    if row is None:
        return None
    csrf, fingerprint, created_at, expires_at = row
    # A shorter EDITOR_SESSION_HOURS applies to sessions already open, too.
    if utcnow() >= min(expires_at, created_at + timedelta(hours=settings.editor_session_hours)):
        return None
    # A new password ends every session made with the old one.
    if not same_secret(fingerprint, _password_fingerprint(settings)):
        return None
    return csrf


def _open_session(settings: Settings) -> str:
    """A new session's cookie value; the server keeps only its hash. Expired sessions, and those of an
    old password, are deleted on the way."""
    token, now = secrets.token_urlsafe(32), utcnow()
    fingerprint = _password_fingerprint(settings)
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(
            sa.delete(EditorSession).where(
                sa.or_(col(EditorSession.expires_at) <= now, col(EditorSession.password_fingerprint) != fingerprint)
            )
        )
        conn.execute(
            sa.insert(EditorSession).values(
                token_hash=_token_hash(token),
                csrf=secrets.token_urlsafe(32),
                password_fingerprint=fingerprint,
                created_at=now,
                expires_at=now + timedelta(hours=settings.editor_session_hours),
            )
        )
    return token


def _close_session(settings: Settings, token: str) -> None:
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(sa.delete(EditorSession).where(col(EditorSession.token_hash) == _token_hash(token)))


def _password_fingerprint(settings: Settings) -> str:
    secret = settings.editor_password_hash or (
        settings.editor_password.get_secret_value() if settings.editor_password else ""
    )
    return hmac.new(settings.secret_key.get_secret_value().encode(), secret.encode(), hashlib.sha256).hexdigest()[:16]


def require_editor(request: Request) -> str:
    """Dependency of every editor route: the session's CSRF token, checked on every POST."""
    csrf = session_csrf(request)
    if csrf is None:
        raise EditorRequired(303 if request.method == "GET" else 403)
    return csrf


async def check_csrf(request: Request, csrf: Annotated[str, Depends(require_editor)]) -> str:
    if request.method == "POST":
        form = await request.form()
        given = form.get("csrf")
        if not isinstance(given, str) or not same_secret(given, csrf):  # an upload, not a field: never a match
            raise FormExpired()
    return csrf


Editor = Annotated[str, Depends(check_csrf)]


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int, path: str = "/editor") -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=is_https(request)
    )


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/editor/login?next={quote(request.url.path)}", status_code=303)


def _safe_next(value: str) -> str:
    # Only our own editor pages: never an open redirect.
    return value if value.startswith("/editor") and not value.startswith("//") else "/editor"


def _login_page(
    request: Request, error: str | None = None, status_code: int = 200, next_url: str = "/editor"
) -> Response:
    settings = request_settings(request)
    token = secrets.token_urlsafe(24)
    configured = bool(settings.editor_password or settings.editor_password_hash)
    response = page(
        request,
        "web/editor/login.html.j2",
        status_code,
        csrf=token,
        error=error,
        next_url=next_url,
        configured=configured,
    )
    _cookie(request, response, LOGIN_COOKIE, _serializer(settings, "login").dumps(token), 3600)
    return response


@router.get("/editor/login")
def login_form(request: Request, next: str = "/editor") -> Response:
    if session_csrf(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next_url=_safe_next(next))


@router.post("/editor/login")
def login(
    request: Request,
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/editor",
) -> Response:
    settings = request_settings(request)
    try:
        expected = _serializer(settings, "login").loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=3600)
    except BadSignature:
        expected = None
    if not expected or not same_secret(str(expected), csrf):
        return _login_page(request, "Your login form expired. Please try again.", 403, _safe_next(next))
    client = client_key(request.client.host if request.client else None)
    failures = _failures(request)
    # The attempt counts before the (slow) check, so parallel guesses cannot slip past the limit.
    if not failures.allow(client):
        return _login_page(request, "Too many failed attempts. Please wait 15 minutes.", 429, _safe_next(next))
    if not password_ok(settings, password):
        return _login_page(request, "That password is not right.", 401, _safe_next(next))
    failures.reset(client)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _cookie(request, response, SESSION_COOKIE, _open_session(settings), settings.editor_session_hours * 3600)
    response.delete_cookie(LOGIN_COOKIE, path="/editor")
    return response


@router.post("/editor/logout")
def logout(request: Request, _: Editor) -> Response:
    # The row goes: the cookie, and every copy of it, stops working on every process.
    _close_session(request_settings(request), request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/editor/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/editor")
    return response
