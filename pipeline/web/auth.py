"""Editor login: personal accounts (``pipeline.ops.accounts``: argon2id, optional TOTP) with roles, or, while no
account exists, one shared password (or its PBKDF2 hash) that acts as an admin; sessions kept on the server, a
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
from collections.abc import Awaitable, Callable
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
from pipeline.errors import VerdictsError
from pipeline.ops import accounts
from pipeline.store.db import get_engine, session_scope
from pipeline.store.models import EditorAccount, EditorSession, Role, utcnow
from pipeline.web.pages import is_https, page, request_settings
from pipeline.web.ratelimit import SlidingWindow, client_key
from pipeline.web.viewer import ENROLMENT_PATHS, EnrolFirst, RoleRequired, Viewer

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
    viewer = current_viewer(request)
    return viewer.csrf if viewer else None


def current_viewer(request: Request) -> Viewer | None:
    """The valid session's editor, or None: expired, logged out, made with an old password, its account
    disabled, or a shared-password session once personal accounts exist."""
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
                col(EditorSession.account_id),
                col(EditorAccount.email),
                col(EditorAccount.role),
                col(EditorAccount.password_hash),
                col(EditorAccount.totp_secret),
                col(EditorAccount.disabled_at),
            )
            .select_from(EditorSession)
            .join(EditorAccount, col(EditorAccount.id) == col(EditorSession.account_id), isouter=True)
            .where(col(EditorSession.token_hash) == _token_hash(token))
        ).first()
        shared_ended = row is not None and row.account_id is None and _accounts_exist(conn)
    if row is None or shared_ended:
        return None
    # A shorter EDITOR_SESSION_HOURS applies to sessions already open, too.
    if utcnow() >= min(row.expires_at, row.created_at + timedelta(hours=settings.editor_session_hours)):
        return None
    # A new password ends every session made with the old one.
    expected = accounts.fingerprint(settings, row.password_hash) if row.account_id else _password_fingerprint(settings)
    if not same_secret(row.password_fingerprint, expected) or row.disabled_at is not None:
        return None
    if row.account_id is None:
        return Viewer(row.csrf, None, None, Role.admin, False)
    return Viewer(row.csrf, row.account_id, row.email, Role(row.role), row.totp_secret is not None)


def _accounts_exist(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(sa.exists(sa.select(col(EditorAccount.id))))).scalar() is True


def _open_session(settings: Settings, account: EditorAccount | None = None) -> str:
    """A new session's cookie value; the server keeps only its hash. Expired sessions, and those of an
    old shared password, are deleted on the way."""
    token, now = secrets.token_urlsafe(32), utcnow()
    shared = _password_fingerprint(settings)
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(
            sa.delete(EditorSession).where(
                sa.or_(
                    col(EditorSession.expires_at) <= now,
                    sa.and_(col(EditorSession.account_id).is_(None), col(EditorSession.password_fingerprint) != shared),
                )
            )
        )
        conn.execute(
            sa.insert(EditorSession).values(
                token_hash=_token_hash(token),
                csrf=secrets.token_urlsafe(32),
                password_fingerprint=accounts.fingerprint(settings, account.password_hash) if account else shared,
                created_at=now,
                expires_at=now + timedelta(hours=settings.editor_session_hours),
                account_id=account.id if account else None,
            )
        )
        if account is not None:
            conn.execute(sa.update(EditorAccount).where(col(EditorAccount.id) == account.id).values(last_login_at=now))
    return token


def _close_session(settings: Settings, token: str) -> None:
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(sa.delete(EditorSession).where(col(EditorSession.token_hash) == _token_hash(token)))


def _password_fingerprint(settings: Settings) -> str:
    secret = settings.editor_password_hash or (
        settings.editor_password.get_secret_value() if settings.editor_password else ""
    )
    return hmac.new(settings.secret_key.get_secret_value().encode(), secret.encode(), hashlib.sha256).hexdigest()[:16]


def _enrolling(path: str) -> bool:
    """The pages an admin who must enrol may reach: exactly these and below them (``/editor/accounts`` is not
    ``/editor/account``: a prefix match let an admin without a second factor manage accounts)."""
    return any(path == allowed or path.startswith(f"{allowed}/") for allowed in ENROLMENT_PATHS)


def require_editor(request: Request) -> str:
    """Dependency of every editor route: the session's CSRF token, checked on every POST. Names who acts
    (``request.state.actor``, ``request.state.role``) for the pages and the records."""
    viewer = current_viewer(request)
    if viewer is None:
        raise EditorRequired(303 if request.method == "GET" else 403)
    request.state.actor, request.state.role, request.state.viewer = viewer.actor, viewer.role, viewer
    settings = request_settings(request)
    if (
        settings.require_2fa
        and viewer.account_id is not None
        and viewer.role is Role.admin
        and not viewer.has_totp
        and not _enrolling(request.url.path)
    ):
        raise EnrolFirst()
    return viewer.csrf


async def check_csrf(request: Request, csrf: Annotated[str, Depends(require_editor)]) -> str:
    if request.method == "POST":
        form = await request.form()
        given = form.get("csrf")
        if not isinstance(given, str) or not same_secret(given, csrf):  # an upload, not a field: never a match
            raise FormExpired()
    return csrf


#: Any logged-in editor (a reviewer at least): previews, reports and comments.
Editor = Annotated[str, Depends(check_csrf)]


def require_role(needed: Role) -> Callable[..., Awaitable[str]]:
    """A dependency refusing (403) a logged-in editor whose role does not cover ``needed``."""

    async def guard(request: Request, csrf: Editor) -> str:
        if not request.state.role.covers(needed):
            raise RoleRequired(needed)
        return csrf

    return guard


#: Editors and admins: edit, reorder, build, test-send.
AsEditor = Annotated[str, Depends(require_role(Role.editor))]
#: Admins: approve, unapprove, schedule, send, cancel, manage accounts.
AsAdmin = Annotated[str, Depends(require_role(Role.admin))]


def viewer_of(request: Request) -> Viewer:
    """The editor the guard let in (call only from a route that depends on ``Editor``)."""
    viewer: Viewer = request.state.viewer
    return viewer


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
    request: Request,
    error: str | None = None,
    status_code: int = 200,
    next_url: str = "/editor",
    pending: str | None = None,
) -> Response:
    """The password form, or (``pending``: a signed account id whose password was right) the code form."""
    settings = request_settings(request)
    token = secrets.token_urlsafe(24)
    with session_scope(settings.database_url) as session:
        personal = accounts.accounts_exist(session)
    configured = personal or bool(settings.editor_password or settings.editor_password_hash)
    response = page(
        request,
        "web/editor/login.html.j2",
        status_code,
        csrf=token,
        error=error,
        next_url=next_url,
        configured=configured,
        personal=personal,
        shared_set=bool(settings.editor_password or settings.editor_password_hash),
        pending=pending,
    )
    _cookie(request, response, LOGIN_COOKIE, _serializer(settings, "login").dumps(token), 3600)
    return response


@router.get("/editor/login")
def login_form(request: Request, next: str = "/editor") -> Response:
    if session_csrf(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next_url=_safe_next(next))


def _form_ok(request: Request, csrf: str) -> bool:
    settings = request_settings(request)
    try:
        expected = _serializer(settings, "login").loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=3600)
    except BadSignature:
        expected = None
    return bool(expected) and same_secret(str(expected), csrf)


def _logged_in(request: Request, next_url: str, account: EditorAccount | None) -> Response:
    settings = request_settings(request)
    response = RedirectResponse(next_url, status_code=303)
    _cookie(request, response, SESSION_COOKIE, _open_session(settings, account), settings.editor_session_hours * 3600)
    response.delete_cookie(LOGIN_COOKIE, path="/editor")
    return response


def _account_for(request: Request, email: str, password: str) -> EditorAccount | None:
    """The enabled account these credentials open, or None (the same work whatever was wrong)."""
    with session_scope(request_settings(request).database_url) as session:
        try:
            account: EditorAccount | None = accounts.find_account(session, email)
        except VerdictsError:
            account = None
        hashed = account.password_hash if account and account.disabled_at is None else None
        return account if accounts.password_matches(hashed, password) else None


@router.post("/editor/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/editor",
) -> Response:
    settings = request_settings(request)
    next_url = _safe_next(next)
    if not _form_ok(request, csrf):
        return _login_page(request, "Your login form expired. Please try again.", 403, next_url)
    client = client_key(request.client.host if request.client else None)
    failures = _failures(request)
    # The attempt counts before the (slow) check, so parallel guesses cannot slip past the limit.
    if not failures.allow(client):
        return _login_page(request, "Too many failed attempts. Please wait 15 minutes.", 429, next_url)
    with session_scope(settings.database_url) as session:
        personal = accounts.accounts_exist(session)
    if not personal:
        if not password_ok(settings, password):
            return _login_page(request, "That password is not right.", 401, next_url)
        failures.reset(client)
        return _logged_in(request, next_url, None)
    account = _account_for(request, email, password)
    if account is None:
        return _login_page(request, "That email and password do not match an enabled account.", 401, next_url)
    failures.reset(client)
    if account.totp_secret:
        pending = _serializer(settings, "2fa").dumps(
            [account.id, accounts.fingerprint(settings, account.password_hash)]
        )
        return _login_page(request, next_url=next_url, pending=pending)
    return _logged_in(request, next_url, account)


@router.post("/editor/login/code")
def login_code(
    request: Request,
    pending: Annotated[str, Form(max_length=500)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/editor",
) -> Response:
    """The second step: a code from the authenticator app, within five minutes of the right password."""
    settings = request_settings(request)
    next_url = _safe_next(next)
    try:
        account_id, print_ = _serializer(settings, "2fa").loads(pending, max_age=300)
    except (BadSignature, ValueError, TypeError):
        account_id, print_ = None, None
    if not _form_ok(request, csrf) or not isinstance(account_id, int):
        return _login_page(request, "Your login form expired. Please log in again.", 403, next_url)
    client = client_key(request.client.host if request.client else None)
    if not _failures(request).allow(client):
        return _login_page(request, "Too many failed attempts. Please wait 15 minutes.", 429, next_url)
    with session_scope(settings.database_url) as session:
        account = session.get(EditorAccount, account_id)
        step = None
        current = account is not None and same_secret(
            str(print_), accounts.fingerprint(settings, account.password_hash)
        )
        if account and account.totp_secret and account.disabled_at is None and current:
            step = accounts.totp_step(account.totp_secret, code, account.totp_last_step)
        if account is None or step is None:
            return _login_page(request, "That code is not right (or was used already).", 401, next_url, pending)
        account.totp_last_step = step
        session.add(account)
    _failures(request).reset(client)
    return _logged_in(request, next_url, account)


@router.post("/editor/logout")
def logout(request: Request, _: Editor) -> Response:
    # The row goes: the cookie, and every copy of it, stops working on every process.
    _close_session(request_settings(request), request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/editor/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/editor")
    return response
