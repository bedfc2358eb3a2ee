"""Who calls the site's API: the bearer token of every ``/api/v1/`` route but the sign-up, checked against the
scopes the route declares (``Security(api_caller, scopes=[...])``, which the OpenAPI document lists too).

No token, or an unknown or revoked one, is a 401 with ``WWW-Authenticate: Bearer`` (RFC 6750); a token without
the route's scope is a 403 that names the scope. Every refusal is a problem (``ApiProblem``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from pipeline.ops.api_tokens import SCOPES, Caller, authenticate
from pipeline.store.db import session_scope
from pipeline.web.pages import request_settings
from pipeline.web.problems import ApiProblem

REALM = 'Bearer realm="verdicts-api"'
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="vt_…",
    description="An API token an admin made (`verdicts api-token create`, or the editor's API tokens page). "
    f"Scopes: {'; '.join(f'{name}: {what}' for name, what in SCOPES.items())}.",
)
HOW_TO_GET_ONE = "an admin makes one with `verdicts api-token create NAME --scope ...` or on /editor/api-tokens"


def api_caller(
    request: Request,
    wanted: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller of a route whose every scope its token holds; else the refusal."""
    if credentials is None:
        raise ApiProblem(
            401,
            f"This endpoint needs an API token: send the header Authorization: Bearer vt_… ({HOW_TO_GET_ONE}).",
            headers={"WWW-Authenticate": REALM},
        )
    with session_scope(request_settings(request).database_url) as session:
        caller = authenticate(session, credentials.credentials)
    if caller is None:
        raise ApiProblem(
            401,
            "The API token is not valid: unknown, mistyped or revoked. Check it, or ask for a new one "
            f"({HOW_TO_GET_ONE}).",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    missing = [scope for scope in wanted.scopes if scope not in caller.scopes]
    if missing:
        raise ApiProblem(
            403,
            f"The token {caller.name!r} lacks the scope {missing[0]}, which this endpoint needs; an admin makes a "
            f"token with it (`verdicts api-token create NAME --scope {missing[0]}`).",
            [("scope", f"{missing[0]} is needed; the token has {', '.join(caller.scopes) or 'no scope'}")],
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{missing[0]}"'},
        )
    return caller
