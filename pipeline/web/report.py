"""The editor's report of one issue (``pipeline.ops.report``): the page, its CSV and JSON exports, and the trend
chart as SVG (an image the page shows, with the same figures as a table beside it: no JavaScript)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from pipeline.ops.report import IssueReport, issue_report, report_csv, report_json
from pipeline.ops.report_chart import SERIES, trend_description, trend_svg
from pipeline.store.db import session_scope
from pipeline.web.auth import Editor
from pipeline.web.pages import MAX_ID, page, request_settings

router = APIRouter(prefix="/editor/issues/{issue_id}/report")
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def _report(request: Request, issue_id: int) -> IssueReport:
    with session_scope(request_settings(request).database_url) as session:
        return issue_report(session, issue_id)


@router.get("")
def report_page(request: Request, csrf: Editor, issue_id: Id) -> Response:
    report = _report(request, issue_id)
    return page(
        request,
        "web/editor/report.html.j2",
        csrf=csrf,
        report=report,
        series=SERIES,
        chart_text=trend_description(report.trend),
        quiet_seconds=request_settings(request).click_quiet_seconds,
    )


@router.get("/trend.svg")
def report_chart(request: Request, csrf: Editor, issue_id: Id) -> Response:
    return Response(trend_svg(_report(request, issue_id).trend), media_type="image/svg+xml")


@router.get(".csv")
def report_as_csv(request: Request, csrf: Editor, issue_id: Id) -> Response:
    return _download(report_csv(_report(request, issue_id)), "text/csv; charset=utf-8", f"issue-{issue_id}-report.csv")


@router.get(".json")
def report_as_json(request: Request, csrf: Editor, issue_id: Id) -> Response:
    body = json.dumps(report_json(_report(request, issue_id)), indent=2)
    return _download(body, "application/json", f"issue-{issue_id}-report.json")


def _download(body: str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'})
