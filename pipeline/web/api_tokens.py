"""The editor's API tokens page, ``/editor/api-tokens``: make a token (shown once), list them, revoke one.

For admins only: every route is guarded by ``AdminGuard``, the one dependency that says who may manage tokens.
A new token reaches the page after the redirect in a short-lived, signed, HttpOnly cookie scoped to this page,
which the page deletes as it shows it: never in a URL, and a reload no longer shows it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipeline.config import Settings
from pipeline.errors import InvalidInput
from pipeline.ops.api_tokens import SCOPES, create_token, list_tokens, revoke_id
from pipeline.store.db import session_scope
from pipeline.web.auth import AsAdmin
from pipeline.web.pages import MAX_ID, actor_of, is_https, page, request_settings

router = APIRouter(prefix="/editor/api-tokens")
PAGE = "/editor/api-tokens"
NEW_TOKEN_COOKIE = "verdicts_new_token"
#: How long the new token waits for the page after the redirect.
SHOWN_WITHIN = 300
#: Who may manage API tokens: admins.
AdminGuard = AsAdmin
DONE = {"created": "Token made: copy it now, it is shown this once.", "revoked": "Token revoked: it stops working now."}


def _signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt="editor-new-api-token")


def _page(
    request: Request, csrf: str, status_code: int = 200, *, done: str = "", error: str | None = None, name: str = ""
) -> Response:
    settings = request_settings(request)
    try:
        fresh = _signer(settings).loads(request.cookies.get(NEW_TOKEN_COOKIE, ""), max_age=SHOWN_WITHIN)
    except BadSignature:
        fresh = None
    with session_scope(settings.database_url) as session:
        tokens = list_tokens(session)
    response = page(
        request,
        "web/editor/api_tokens.html.j2",
        status_code,
        csrf=csrf,
        tokens=tokens,
        scopes=SCOPES,
        fresh=fresh if isinstance(fresh, str) else None,
        notice=DONE.get(done) if done != "created" or isinstance(fresh, str) else None,
        error=error,
        name=name,
    )
    response.delete_cookie(NEW_TOKEN_COOKIE, path=PAGE)
    return response


@router.get("")
def tokens_page(request: Request, csrf: AdminGuard, done: str = "") -> Response:
    return _page(request, csrf, done=done)


@router.post("")
def make_token(
    request: Request,
    csrf: AdminGuard,
    name: Annotated[str, Form(max_length=1000)] = "",
    scope: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies a parameter's default)
) -> Response:
    settings = request_settings(request)
    try:
        with session_scope(settings.database_url) as session:
            made = create_token(session, name, scope, actor_of(request))
    except InvalidInput as exc:
        return _page(request, csrf, 422, error=f"{exc} Nothing was made.", name=name)
    response = RedirectResponse(f"{PAGE}?done=created", status_code=303)
    response.set_cookie(
        NEW_TOKEN_COOKIE,
        _signer(settings).dumps(made.secret),
        max_age=SHOWN_WITHIN,
        path=PAGE,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.post("/{token_id}/revoke")
def revoke_token(request: Request, csrf: AdminGuard, token_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    with session_scope(request_settings(request).database_url) as session:
        revoke_id(session, token_id, actor_of(request))
    return RedirectResponse(f"{PAGE}?done=revoked", status_code=303)
