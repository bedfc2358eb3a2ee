"""Editor accounts on the web: admins add people, change roles and disable accounts (``/editor/accounts``);
everyone enrols a TOTP second factor on their own page (``/editor/account``: the otpauth URI as text, no QR
service); anyone sets a password from an emailed link (``/editor/password/…``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, col, select

from pipeline.config import Settings
from pipeline.errors import NotFound, VerdictsError
from pipeline.ops import accounts
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import EditorAccount
from pipeline.web.auth import AsAdmin, Editor, viewer_of
from pipeline.web.pages import MAX_ID, actor_of, message, page, request_settings
from pipeline.web.ratelimit import client_key

router = APIRouter(prefix="/editor")
AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]
DONE = {
    "added": "Account added: the set-password link is on its way to them.",
    "role": "Role changed: it applies at their next click.",
    "disabled": "Account disabled: their sessions have ended.",
    "enrolled": "Two-factor login is on: the next login asks for a code.",
}


def _accounts_page(
    request: Request, csrf: str, done: str = "", error: str | None = None, status: int = 200
) -> Response:
    with session_scope(request_settings(request).database_url) as session:
        rows = session.exec(select(EditorAccount).order_by(col(EditorAccount.email))).all()
    return page(
        request,
        "web/editor/accounts.html.j2",
        status,
        csrf=csrf,
        rows=rows,
        me=viewer_of(request).account_id,
        notice=DONE.get(done),
        error=error,
    )


@router.get("/accounts")
def accounts_page(request: Request, csrf: AsAdmin, done: str = "") -> Response:
    return _accounts_page(request, csrf, done)


def _manage(request: Request, csrf: str, done: str, change: Callable[[Session], object]) -> Response:
    """Run one account change in one transaction; a refusal shows the page with why, and nothing changed."""
    try:
        with session_scope(request_settings(request).database_url) as session:
            change(session)
    except VerdictsError as exc:
        return _accounts_page(request, csrf, error=str(exc), status=422)
    return RedirectResponse(f"/editor/accounts?done={done}", status_code=303)


@router.post("/accounts")
def add(
    request: Request,
    csrf: AsAdmin,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    settings = request_settings(request)

    def change(session: Session) -> None:
        account = accounts.add_account(session, email, accounts.parse_role(role), actor=actor_of(request))
        accounts.send_link(settings, account, welcome=True)  # a refused email rolls the account back

    return _manage(request, csrf, "added", change)


def _account(session: Session, account_id: int) -> EditorAccount:
    account = session.get(EditorAccount, account_id)
    if account is None:
        raise NotFound(f"there is no editor account {account_id}")
    return account


@router.post("/accounts/{account_id}/role")
def change_role(
    request: Request, account_id: AccountId, csrf: AsAdmin, role: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    return _manage(
        request,
        csrf,
        "role",
        lambda s: accounts.set_role(s, _account(s, account_id), accounts.parse_role(role), actor=actor_of(request)),
    )


@router.post("/accounts/{account_id}/disable")
def disable(request: Request, account_id: AccountId, csrf: AsAdmin) -> Response:
    me = viewer_of(request).account_id
    return _manage(
        request,
        csrf,
        "disabled",
        lambda s: accounts.disable(s, _account(s, account_id), by=me, actor=actor_of(request)),
    )


def _own_page(request: Request, csrf: str, done: str = "", error: str | None = None, status: int = 200) -> Response:
    settings = request_settings(request)
    viewer = viewer_of(request)
    with session_scope(settings.database_url) as session:
        account = session.get(EditorAccount, viewer.account_id) if viewer.account_id else None
    uri = (
        accounts.otpauth_uri(settings, account.email, account.totp_pending) if account and account.totp_pending else ""
    )
    return page(
        request,
        "web/editor/account.html.j2",
        status,
        csrf=csrf,
        account=account,
        otpauth=uri,
        secret=account.totp_pending if account else None,
        must_enrol=settings.require_2fa and account is not None and account.role.value == "admin",
        notice=DONE.get(done),
        error=error,
    )


@router.get("/account")
def own_account(request: Request, csrf: Editor, done: str = "") -> Response:
    return _own_page(request, csrf, done)


@router.post("/account/totp")
def start_totp(request: Request, csrf: Editor) -> Response:
    """A new secret to enrol, shown once on the account page until a code confirms it."""
    viewer = viewer_of(request)
    if viewer.account_id is None:
        return _own_page(
            request, csrf, error="the shared password has no second factor: make personal accounts", status=422
        )
    with session_scope(request_settings(request).database_url) as session:
        account = _account(session, viewer.account_id)
        if account.totp_secret is not None:  # a session alone must not swap the factor for one its holder owns
            return _own_page(request, csrf, error=REPLACING_TOTP, status=409)
        account.totp_pending = accounts.new_totp_secret()
        session.add(account)
    return RedirectResponse("/editor/account", status_code=303)


REPLACING_TOTP = (
    "your second factor is on already: to move it to another app, ask an admin to clear it "
    "(`verdicts editor reset EMAIL --2fa`), then set it up again"
)


@router.post("/account/totp/confirm")
def confirm_totp(request: Request, csrf: Editor, code: Annotated[str, Form(max_length=20)] = "") -> Response:
    viewer = viewer_of(request)
    with session_scope(request_settings(request).database_url) as session:
        account = _account(session, viewer.account_id or 0)
        if account.totp_secret is not None:
            return _own_page(request, csrf, error=REPLACING_TOTP, status=409)
        step = accounts.totp_step(account.totp_pending, code, None) if account.totp_pending else None
        if step is not None:
            account.totp_secret, account.totp_pending, account.totp_last_step = account.totp_pending, None, step
            session.add(account)
            audit.record(session, actor_of(request), "account.totp", detail={"account": account.email})
    if step is None:
        return _own_page(
            request, csrf, error=f"the code {code[:20]!r} is not the app's current code: try the next one", status=422
        )
    return RedirectResponse("/editor/account?done=enrolled", status_code=303)


def _password_page(
    request: Request,
    status: int = 200,
    *,
    sent: bool = False,
    token: str | None = None,
    email: str | None = None,
    error: str | None = None,
) -> Response:
    """Asking for a link (no ``token``), or setting the password a link opened."""
    return page(request, "web/editor/password.html.j2", status, sent=sent, token=token, email=email, error=error)


@router.get("/password/reset")
def reset_form(request: Request, sent: bool = False) -> Response:
    return _password_page(request, sent=sent)


def _send_reset(settings: Settings, email: str) -> None:
    with session_scope(settings.database_url) as session:
        try:
            account = accounts.find_account(session, email)
        except VerdictsError:
            return
    if account.disabled_at is None:
        accounts.send_link(settings, account, welcome=False)


@router.post("/password/reset")
def ask_reset(
    request: Request, background: BackgroundTasks, email: Annotated[str, Form(max_length=320)] = ""
) -> Response:
    """The same answer whatever the address: the page never tells who has an account. The email goes after the
    answer, so its timing does not tell either."""
    failures = request.app.state.login_failures
    if failures.allow(client_key(request.client.host if request.client else None)):
        background.add_task(_send_reset, request_settings(request), email)
    return RedirectResponse("/editor/password/reset?sent=1", status_code=303)


def _dead_link(request: Request, exc: VerdictsError) -> Response:
    return message(request, "This link does not work", str(exc), 410, "/editor/password/reset", "Ask for a new one")


@router.get("/password/{token}")
def set_form(request: Request, token: Annotated[str, Path(max_length=500)]) -> Response:
    settings = request_settings(request)
    try:
        with session_scope(settings.database_url) as session:
            account = accounts.account_from_link(session, settings, token)
    except VerdictsError as exc:
        return _dead_link(request, exc)
    return _password_page(request, token=token, email=account.email)


@router.post("/password/{token}")
def set_password(
    request: Request,
    token: Annotated[str, Path(max_length=500)],
    password: Annotated[str, Form(max_length=accounts.MAX_PASSWORD * 2)] = "",
    again: Annotated[str, Form(max_length=accounts.MAX_PASSWORD * 2)] = "",
) -> Response:
    """Single use: the new password changes the fingerprint the link names (and ends the account's sessions)."""
    settings = request_settings(request)
    try:
        with session_scope(settings.database_url) as session:
            account = accounts.account_from_link(session, settings, token)
            why = "the two passwords differ: type the same one twice" if password != again else None
            why = why or accounts.password_problem(password)
            if why is None:
                accounts.set_password(session, account, password)
    except VerdictsError as exc:
        return _dead_link(request, exc)
    if why is not None:
        return _password_page(request, 422, token=token, email=account.email, error=why)
    return RedirectResponse("/editor/login?password=set", status_code=303)
