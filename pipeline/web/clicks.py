"""``/r/<issue>/<comparison>/<signature>``: the email's "Read the full comparison" link. Redirects (302) to the
comparison and counts the click in aggregate when a reader, not a link scanner, made it (``pipeline.ops.clicks``).
Only links we signed are served (a forged one is a 404), and the target is the comparison's own URL: no open
redirect. The web version of an issue links to the comparisons directly."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import col, select

from pipeline.email.clicks import PREFIX, is_click_signature
from pipeline.errors import NotFound
from pipeline.ops.clicks import BURST_SECONDS, count_click, in_scanner_burst, not_a_reader
from pipeline.store.db import session_scope
from pipeline.store.models import Comparison, Issue, IssueItem, utcnow
from pipeline.web.pages import MAX_ID, request_settings
from pipeline.web.ratelimit import SlidingWindow, client_key

log = logging.getLogger(__name__)
router = APIRouter()

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_OURS = "This link is not valid: it was changed, or is not one of ours. The comparisons are on our site."


def network_bursts(database_url: str) -> SlidingWindow:
    """One counted click per IP network per issue in ``BURST_SECONDS``, shared by every web process."""
    return SlidingWindow(database_url, "click-burst", 1, BURST_SECONDS)


@router.api_route(f"/{PREFIX}/{{issue_id}}/{{comparison_id}}/{{signature}}", methods=["GET", "HEAD"])
def read_comparison(
    request: Request, issue_id: Id, comparison_id: Id, signature: Annotated[str, Path(max_length=64)]
) -> Response:
    settings = request_settings(request)
    if not is_click_signature(settings.secret_key.get_secret_value(), issue_id, comparison_id, signature):
        raise NotFound(NOT_OURS)
    now = utcnow()
    with session_scope(settings.database_url) as session:
        found = session.exec(
            select(Comparison, Issue)
            .join(IssueItem, col(IssueItem.comparison_id) == col(Comparison.id))
            .join(Issue, col(Issue.id) == col(IssueItem.issue_id))
            .where(Comparison.id == comparison_id, Issue.id == issue_id)
        ).first()
        if found is None:  # signed, but the comparison has left the issue (dropped after a test copy) or is gone
            comparison = session.get(Comparison, comparison_id)
            if comparison is None:
                raise NotFound(NOT_OURS)
            return _to(comparison.url)
        comparison, issue = found
        why = not_a_reader(request.method, request.headers) or in_scanner_burst(session, issue, now, settings)
        if why is None and not request.app.state.click_bursts.allow(f"{issue_id}:{client_key(_host(request))}"):
            why = "a sweep of the issue's links from one network"
        if why is None:
            count_click(session, issue_id, comparison_id, now)
        else:
            log.debug("click on issue %d comparison %d not counted: %s", issue_id, comparison_id, why)
        return _to(comparison.url)


def _host(request: Request) -> str | None:
    return request.client.host if request.client else None


def _to(url: str) -> Response:
    return RedirectResponse(url, status_code=302, headers={"x-robots-tag": "noindex"})
