"""``POST /api/v1/subscribe``: the sign-up as JSON, for a site's own form or a partner's.

The same steps as the form (``signup_routes.accept_sign_up``): the limits, the double opt-in after the answer.
Every accepted request gets the same ``202`` body, whatever the address's state: the API reveals nothing a
stranger could not learn from the form. Every refusal is an RFC 9457 problem (``application/problem+json``)
whose ``errors`` name each field at fault. Browsers may call it from ``EMBED_ORIGINS`` (CORS, ``ApiCors``);
there is no cookie and no credential, so CORS guards nothing but the answer's readability.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.web.problems import problem
from subscribers import origin
from subscribers.pages import request_evidence
from subscribers.signup_routes import accept_sign_up

router = APIRouter(prefix="/api/v1")

PREFIX = "/api/"
#: A sign-up is a few hundred bytes; this leaves room for every interest and a long name.
MAX_BODY = 16 * 1024
FIELDS = ("email", "name", "source", "interests", "utm", *origin.UTM_KEYS, "ref")
ACCEPTED = {
    "status": "accepted",
    "detail": "If the address can be signed up, a confirmation email is on its way; nothing changes until its "
    "owner presses the button in it.",
}
#: What a problem without a detail of its own says (statuses the app answers before the route runs).
GENERIC = {
    404: "There is nothing at this address: the sign-up is POST /api/v1/subscribe.",
    405: "This address takes POST only, with a JSON body.",
    413: f"The body is larger than {MAX_BODY // 1024} KiB; a sign-up needs a few hundred bytes.",
}


def is_api(path: str) -> bool:
    return path.startswith(PREFIX)


def generic_problem(status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The app's own refusals (size, method, path) on an API path: a problem, not an HTML page."""
    return problem(status, GENERIC.get(status, HTTPStatus(status).description), (), headers)


class ApiCors:
    """Starlette's CORS middleware on ``/api/`` paths only: no page of ours is readable cross-origin."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["POST"], allow_headers=["Content-Type"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self.cors if scope["type"] == "http" and is_api(scope["path"]) else self.app
        await inner(scope, receive, send)


@router.post("/subscribe")
async def api_subscribe(request: Request, background: BackgroundTasks) -> Response:
    kind = request.headers.get("content-type", "")
    if kind.split(";")[0].strip().lower() != "application/json":
        return problem(
            415,
            "Send the sign-up as JSON.",
            [("Content-Type", f"is {kind[:60]!r}; send Content-Type: application/json")],
        )
    try:
        raw = await request.body()
    except HTTPException as exc:  # cut off past the body limit (``BodyLimit``), as it streamed in
        return generic_problem(exc.status_code)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested past the parser's depth
        return problem(400, "The body is not JSON.", [("body", f"could not be read as JSON: {str(exc)[:100]}")])
    if not isinstance(data, dict):
        return problem(422, "The body must be a JSON object.", [("body", f"is a JSON {type(data).__name__}")])
    values, errors = _checked(data)
    if errors:
        return problem(422, "Some fields are not valid; nothing was changed.", errors)
    evidence = request_evidence(request, "api")
    came_from = origin.lenient(values)
    refused = await run_in_threadpool(
        accept_sign_up, request, background, values["email"], values.get("name") or "", evidence, came_from,
        values.get("interests"),
    )  # fmt: skip
    if refused is None:
        return JSONResponse(ACCEPTED, 202)
    if refused.field is None:
        return problem(refused.status, refused.text, headers={"Retry-After": "3600"})
    given = values.get(refused.field)
    quoted = f" (it was {given[:60]!r})" if isinstance(given, str) else ""
    return problem(
        refused.status, "Some fields are not valid; nothing was changed.", [(refused.field, refused.text + quoted)]
    )


def _checked(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The body's values with ``utm`` flattened into ``utm_*``, and every field's problem (names, types, the
    origin's lengths); what needs the database (the address, the interests) is checked by the sign-up."""
    errors = [
        (str(key)[:60], f"is not a field; the fields are {', '.join(FIELDS)}") for key in data if key not in FIELDS
    ]
    if not isinstance(data.get("email"), str):
        errors.append(("email", "is required, a string: the reader's address"))
    for key in ("name", "source", "ref", *origin.UTM_KEYS):
        if data.get(key) is not None and not isinstance(data[key], str):
            errors.append((key, f"must be a string, not {_json_type(data[key])}"))
    picked = data.get("interests")
    if picked is not None and not (isinstance(picked, list) and all(isinstance(v, str) for v in picked)):
        errors.append(("interests", "must be a list of category names (strings); an empty list means everything"))
    values = {key: value for key, value in data.items() if key != "utm"}
    utm = data.get("utm")
    if isinstance(utm, dict):
        for key, value in utm.items():
            name = key if str(key).startswith("utm_") else f"utm_{key}"
            if name in origin.UTM_KEYS:
                values.setdefault(name, value)
            else:
                errors.append((f"utm.{str(key)[:40]}", f"is not a utm parameter; use {', '.join(origin.UTM_KEYS)}"))
    elif utm is not None:
        errors.append(("utm", f'must be an object such as {{"source": "newsletter"}}, not {_json_type(utm)}'))
    if not errors:
        errors += origin.problems(values)[1]
    return values, errors


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), "null")
