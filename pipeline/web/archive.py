"""The public archive: each sent issue's web version at ``/issues/<week>`` ("View in browser"),
an index, and an Atom feed. The same HTML readers got, filled with neutral values: no
reader's name, address or token ever appears here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import col, select
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.content.votes import export_rows
from pipeline.email.personal import html_values
from pipeline.email.render import render_issue, web_url
from pipeline.store.db import session_scope
from pipeline.store.models import Issue, IssueStatus, utcnow
from pipeline.web.pages import EMAIL_CSP, page, request_settings

router = APIRouter()
PUBLISHED = (IssueStatus.sending, IssueStatus.paused, IssueStatus.sent)
ATOM = "http://www.w3.org/2005/Atom"


def _published(settings: Settings) -> list[Issue]:
    with session_scope(settings.database_url) as session:
        return list(
            session.exec(select(Issue).where(col(Issue.status).in_(PUBLISHED)).order_by(col(Issue.week).desc()))
        )


def public_values(settings: Settings) -> dict[str, str]:
    """What a web reader sees where a subscriber sees their own name and voting link: voting is for subscribers.
    (The web version has no unsubscribe or preferences link to fill.)"""
    # The template appends "/<tool>/ship" or "…/skip" to the voting link: a harmless query on the sign-up page.
    return {"name": "there", "vote_url": f"{settings.base_url}/subscribe?vote="}


@router.get("/issues")
def index(request: Request) -> Response:
    return page(request, "web/archive.html.j2", issues=_published(request_settings(request)))


@router.get("/issues/feed.xml")
def feed(request: Request) -> Response:
    """Atom (RFC 4287), built with ElementTree so every value is escaped."""
    settings = request_settings(request)
    published = _published(settings)
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    for tag, text in (
        ("title", settings.from_name),
        ("id", f"{settings.base_url}/issues"),
        ("updated", _stamp(published[0]) if published else "1970-01-01T00:00:00Z"),
    ):
        ET.SubElement(root, f"{{{ATOM}}}{tag}").text = text
    ET.SubElement(root, f"{{{ATOM}}}link", href=f"{settings.base_url}/issues/feed.xml", rel="self")
    ET.SubElement(ET.SubElement(root, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = settings.from_name
    for issue in published:
        entry = ET.SubElement(root, f"{{{ATOM}}}entry")
        url = web_url(settings, issue.week)
        ET.SubElement(entry, f"{{{ATOM}}}title").text = issue.subject
        ET.SubElement(entry, f"{{{ATOM}}}id").text = url
        ET.SubElement(entry, f"{{{ATOM}}}link", href=url, rel="alternate", type="text/html")
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _stamp(issue)
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = issue.preheader or issue.subject
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="application/atom+xml", headers={"Cache-Control": "public, max-age=600"})


def _stamp(issue: Issue) -> str:
    moment = issue.sent_at or issue.send_started_at or issue.created_at
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get("/votes.json")
def votes_json(request: Request) -> Response:
    """The community split of every tool, for the site (aggregates only, no reader data)."""
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        rows = export_rows(session, published_by=utcnow())
    return JSONResponse(rows, headers={"Cache-Control": "public, max-age=60"})


#: Seconds a web version is served as rendered before it is rendered again: its community splits
#: are at most this old (``/votes.json`` says the same), and an issue everyone opens at once costs
#: one render a minute per web process, not one per reader (40 ms each with 300,000 votes).
FRESH_SECONDS = 60.0


class RecentPages:
    """Pages rendered in the last FRESH_SECONDS, by key; one per app (each web process keeps its own). When a
    page goes stale, one request renders it again while the others are served the page it replaces: every
    request rendering at once (several at 100 ms each under load) was the web version's p99."""

    def __init__(self) -> None:
        self._pages: dict[Hashable, tuple[float, str]] = {}
        self._rendering: set[Hashable] = set()
        self._lock = threading.Lock()

    def get(self, key: Hashable, render: Callable[[], str]) -> str:
        with self._lock:
            rendered_at, page_html = self._pages.get(key, (None, ""))
            if rendered_at is not None and (time.monotonic() - rendered_at < FRESH_SECONDS or key in self._rendering):
                return page_html
            self._rendering.add(key)  # a first render is not waited for: two first requests render twice
        try:
            page_html = render()
        finally:
            with self._lock:
                self._rendering.discard(key)
        with self._lock:
            self._pages[key] = (time.monotonic(), page_html)
        return page_html


def _recent(request: Request) -> RecentPages:
    recent: RecentPages = request.app.state.web_versions
    return recent


@router.get("/issues/{week}")
def web_version(request: Request, week: str) -> Response:
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        issue = session.exec(select(Issue).where(Issue.week == week)).first()
        if issue is None or issue.status not in PUBLISHED:
            raise HTTPException(404)
        html = _recent(request).get(
            (issue.id, issue.revision),
            lambda: render_issue(session, issue, settings, web=True).body.html.fill(
                html_values(public_values(settings))
            ),
        )
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_CSP, "Cache-Control": "public, max-age=600"})
