"""The site's HTTP API (``/api/v1/``): comparisons in, issues out, for scripts holding an API token.

- ``POST /api/v1/comparisons`` (scope ``comparisons:write``): the import format of ``verdicts comparisons
  import``, checked the same way, all or nothing, idempotent by slug (each slug's outcome: added, updated or
  unchanged);
- ``GET /api/v1/issues`` and ``GET /api/v1/issues/{id}`` (scope ``issues:read``): issues newest first with
  their delivery counts; one issue with its report's main figures (``pipeline.ops.report``).

Every refusal is an RFC 9457 problem (``pipeline.web.problems``). The schema is at ``/api/openapi.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException

from pipeline.content import importing
from pipeline.content.issues import issue_comparisons
from pipeline.ops.api_tokens import Caller
from pipeline.ops.report import issue_report
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import Delivery, DeliveryStatus, Issue, IssueStatus, saved_id
from pipeline.web.api_auth import api_caller
from pipeline.web.pages import MAX_ID, request_settings
from pipeline.web.problems import ApiProblem, problem

router = APIRouter(prefix="/api/v1", tags=["site"])

PROBLEM = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API token, or an unknown or revoked one", **PROBLEM},
    403: {"description": "The token lacks the endpoint's scope (the problem names it)", **PROBLEM},
}
#: What a refusal the app makes before a route runs says on these paths (the sign-up has its own: ``api_routes``).
GENERIC = {
    404: "There is nothing at this address: /api/docs lists the API's endpoints.",
    405: "This address does not take that method: /api/docs lists each endpoint's.",
    413: "The body is larger than VERDICTS_IMPORT_MAX_MB: send the comparisons in several smaller requests.",
}

Writer = Annotated[Caller, Security(api_caller, scopes=["comparisons:write"])]
Reader = Annotated[Caller, Security(api_caller, scopes=["issues:read"])]


def generic_refusal(status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The app's own refusals (size, method, path) on these paths, as problems."""
    return problem(status, GENERIC.get(status, HTTPStatus(status).description), (), headers)


def field_problem(exc: RequestValidationError) -> JSONResponse:
    """A query or path value FastAPI refused (``limit=abc``): a 400 naming it, quoting it, saying what it must be."""
    errors = []
    for error in exc.errors()[:5]:
        given = error.get("input")
        shown = f" (it was {str(given)[:60]!r})" if isinstance(given, (str, int, float)) else ""
        errors.append((str(error["loc"][-1]) if error.get("loc") else "request", error.get("msg", "") + shown))
    return problem(400, "Some values of the request are not valid; nothing was changed.", errors)


@router.post(
    "/comparisons",
    summary="Add or update comparisons (the import format)",
    status_code=201,
    responses={
        200: {"description": "Every comparison was known: updated, or unchanged (nothing written)"},
        201: {"description": "At least one comparison was added; the others updated or unchanged"},
        **REFUSALS,
        400: {"description": "The body is not JSON", **PROBLEM},
        409: {"description": "Another request added the same slug at the same moment: send again", **PROBLEM},
        413: {"description": "The body is over VERDICTS_IMPORT_MAX_MB", **PROBLEM},
        415: {"description": "The body is not sent as application/json", **PROBLEM},
        422: {"description": "Records that fail the import format, each named with its field", **PROBLEM},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ComparisonIn"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/ComparisonIn"}},
                        ]
                    }
                }
            },
        }
    },
)
async def post_comparisons(request: Request, caller: Writer) -> Response:
    """The same records `verdicts comparisons import` reads (one object, a list, or {"comparisons": [...]}),
    checked the same way: one bad record and nothing is written, every problem named with its record (from 0),
    slug and field. Idempotent by slug: a comparison sent again as it is stored is "unchanged" and not written."""
    data = await _json_body(request)
    items, problems = importing.comparisons_in(data)
    if problems:
        raise ApiProblem(
            422,
            f"{len(problems)} problem(s) in the comparisons; nothing was written. Fix them and send all again.",
            [_listed(p) for p in problems[: importing.SHOWN_PROBLEMS * 5]],
        )
    try:
        with session_scope(request_settings(request).database_url) as session:
            outcomes = importing.save(session, items)
            imported: dict[str, object] = {
                outcome.value: sorted(s for s, o in outcomes.items() if o is outcome) for outcome in importing.Outcome
            }
            if any(outcome is not importing.Outcome.unchanged for outcome in outcomes.values()):  # idempotent
                audit.record(session, f"api:{caller.name}", "comparisons.import", detail=imported)
    except importing.ComparisonLocked as exc:
        raise ApiProblem(409, str(exc)) from None
    except sa.exc.IntegrityError:
        raise ApiProblem(409, "Another request added one of these slugs at the same moment; send them again.") from None
    counts = Counter(outcomes.values())
    body = {
        "results": [{"slug": slug, "outcome": outcome.value} for slug, outcome in outcomes.items()],
        **{outcome.value: counts[outcome] for outcome in importing.Outcome},
    }
    return JSONResponse(body, 201 if counts[importing.Outcome.added] else 200)


async def _json_body(request: Request) -> Any:
    kind = request.headers.get("content-type", "")
    if kind.split(";")[0].strip().lower() != "application/json":
        raise ApiProblem(
            415,
            "Send the comparisons as JSON.",
            [("Content-Type", f"is {kind[:60]!r}; send Content-Type: application/json")],
        )
    try:
        raw = await request.body()
    except HTTPException as exc:  # cut off past the body limit (``BodyLimit``) as it streamed in
        raise ApiProblem(exc.status_code, GENERIC.get(exc.status_code, "The body could not be read.")) from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested past the parser's depth
        raise ApiProblem(
            400, "The body is not JSON.", [("body", f"could not be read as JSON: {str(exc)[:100]}")]
        ) from None


def _listed(found: importing.RecordProblem) -> dict[str, Any]:
    """A problem as the API lists it: the record's index (from 0) and slug when there are, the field, the detail."""
    if found.record is None:
        return {"field": found.field or "body", "detail": found.detail}
    named = {"record": found.record} | ({"slug": found.slug} if found.slug else {})
    return named | {"field": found.field, "detail": found.detail}


@router.get("/issues", summary="Issues, newest first, with their delivery counts", responses={**REFUSALS})
def list_issues(
    request: Request,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=100, description="issues per page")] = 20,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only issues older than this id (as next gives it)")
    ] = None,
) -> dict[str, Any]:
    """A page of issues, newest first; "next" is the address of the page after it (null on the last)."""
    with session_scope(request_settings(request).database_url) as session:
        query = select(Issue).order_by(col(Issue.id).desc()).limit(limit + 1)
        if before is not None:
            query = query.where(col(Issue.id) < before)
        rows = list(session.exec(query))
        shown = rows[:limit]
        counts = _counts(session, [saved_id(i) for i in shown])
        issues = [_summary(i, counts[saved_id(i)]) for i in shown]
    more = len(rows) > limit
    return {"issues": issues, "next": f"/api/v1/issues?limit={limit}&before={issues[-1]['id']}" if more else None}


@router.get(
    "/issues/{issue_id}",
    summary="One issue: its delivery counts and its report's main figures",
    responses={**REFUSALS, 404: {"description": "No issue has this id", **PROBLEM}},
)
def one_issue(request: Request, caller: Reader, issue_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
    """The issue, its comparisons, its deliveries per status, and what the providers and readers did (opens are
    not tracked)."""
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            raise ApiProblem(404, f"There is no issue {issue_id}: GET /api/v1/issues lists them.")
        report = issue_report(session, issue_id, trend_issues=1)
        detail = _summary(issue, _counts(session, [issue_id])[issue_id])
        detail["comparisons"] = [
            {"slug": c.slug, "title": c.title, "url": c.url} for c in issue_comparisons(session, issue)
        ]
    total = report.total
    detail["report"] = {
        "sent": total.sent,
        "delivered": total.delivered,
        "bounced": total.hard_bounced + total.soft_bounced,
        "complained": total.complained,
        "unsubscribed": total.unsubscribed,
        "voters": report.voters,
        "voter_share_pct": report.voter_share,
        "clicks": sum(c.clicks for c in report.clicks),
        "opens": "not tracked",
    }
    detail["web_version"] = f"{settings.base_url}/issues/{issue.week}" if issue.status is IssueStatus.sent else None
    return detail


def _counts(session: Session, ids: list[int]) -> dict[int, dict[str, int]]:
    """Deliveries per status of each issue, every status named (0 when none): one query for the page."""
    counts: dict[int, dict[str, int]] = {i: {s.value: 0 for s in DeliveryStatus} for i in ids}
    rows = session.exec(
        select(Delivery.issue_id, Delivery.status, sa.func.count())
        .where(col(Delivery.issue_id).in_(ids))
        .group_by(col(Delivery.issue_id), col(Delivery.status))
    ).all()
    for issue_id, status, n in rows:
        counts[issue_id][DeliveryStatus(status).value] = n
    return counts


def _summary(issue: Issue, counts: dict[str, int]) -> dict[str, Any]:
    when = {k: getattr(issue, k) for k in ("created_at", "approved_at", "scheduled_for", "sent_at")}
    return {
        "id": issue.id,
        "week": issue.week,
        "status": issue.status.value,
        "subject": issue.subject,
        **{k: v.isoformat() if v else None for k, v in when.items()},
        "counts": counts,
    }
