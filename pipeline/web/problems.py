"""RFC 9457 problem details: how every JSON API of the site says no (``application/problem+json``).

``errors`` lists each thing at fault: a field and what is wrong with it and the fix, or, for a record of a
list, an object that also names the record. ``ApiProblem`` is raised by what runs before a route (the token
check); the app answers it with its problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

#: (field, what is wrong with it and the fix), or an object of its own (``{"record": 0, "field": ..., ...}``).
Problems = Iterable[tuple[str, str] | Mapping[str, Any]]


def problem(status: int, detail: str, errors: Problems = (), headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An RFC 9457 problem; ``errors``: (field, what is wrong with it and the fix), or objects naming more."""
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body["detail"] = detail
    listed = [dict(e) if isinstance(e, Mapping) else {"field": e[0], "detail": e[1]} for e in errors]
    if listed:
        body["errors"] = listed
    return ProblemResponse(body, status, headers=headers, media_type="application/problem+json")


class ProblemResponse(JSONResponse):
    """JSON in ASCII: a problem quotes what the client sent, and a lone surrogate (``"\\ud800"`` is valid JSON)
    cannot be encoded as UTF-8; escaped, every string the body held can be quoted back."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class ApiProblem(Exception):
    """A refusal raised before or inside an API route; the app answers it with ``problem``."""

    def __init__(
        self, status: int, detail: str, errors: Problems = (), headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, list(errors), headers

    def response(self) -> JSONResponse:
        return problem(self.status, self.detail, self.errors, self.headers)
