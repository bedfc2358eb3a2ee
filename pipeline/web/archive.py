"""The public archive: each sent issue's web version at ``/issues/<week>`` ("View in browser"),
an index, and an Atom feed. The same HTML readers got, filled with neutral values: no
reader's name, address or token ever appears here. A visitor who came through a reader's "Forward this
verdict" link (``?ref=<referral code>``) gets sign-up and forward links that carry that code on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.content.votes import export_rows
from pipeline.email.personal import PersonalTemplate, html_values
from pipeline.email.render import render_issue, web_url
from pipeline.store.db import session_scope
from pipeline.store.models import Issue, IssueStatus, utcnow
from pipeline.web.pages import EMAIL_CSP, page, request_settings
from subscribers.tokens import read_referral

router = APIRouter()
PUBLISHED = (IssueStatus.sending, IssueStatus.paused, IssueStatus.sent)
ATOM = "http://www.w3.org/2005/Atom"
T = TypeVar("T")


def _published(settings: Settings) -> list[Issue]:
    with session_scope(settings.database_url) as session:
        return list(
            session.exec(select(Issue).where(col(Issue.status).in_(PUBLISHED)).order_by(col(Issue.week).desc()))
        )


def latest_week(session: Session) -> str | None:
    """The week of the newest issue with a web version: what a reader's preferences page offers to forward."""
    return session.exec(
        select(Issue.week).where(col(Issue.status).in_(PUBLISHED)).order_by(col(Issue.week).desc())
    ).first()


def public_values(settings: Settings, week: str, ref: str | None = None) -> dict[str, str]:
    """What a web reader sees where a subscriber sees their own name and links: voting is for subscribers, and
    forwarding passes on the page with the referral code ``ref`` it was reached with, if any. (The web version
    has no unsubscribe or preferences link to fill.)"""
    page_url = web_url(settings, week)
    return {
        "name": "there",
        # The template appends "/<tool>/ship" or "…/skip" to the voting link: a harmless query on the sign-up page.
        "vote_url": f"{settings.base_url}/subscribe?vote=",
        "forward_url": f"{page_url}?ref={ref}" if ref else page_url,
        # Appended to the sign-up links inside an href, so written as markup; a checked code is digits, "." and hex.
        "ref_param": f"&amp;ref={ref}" if ref else "",
    }


def referral(settings: Settings, ref: str) -> str | None:
    """``ref`` when it is a referral code we signed; anything else is dropped, never carried on to a sign-up."""
    return ref if ref and read_referral(settings.secret_key.get_secret_value(), ref) is not None else None


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


class RecentPages(Generic[T]):
    """Pages rendered in the last FRESH_SECONDS, by key; one per app (each web process keeps its own). When a
    page goes stale, one request renders it again while the others are served the page it replaces: every
    request rendering at once (several at 100 ms each under load) was the web version's p99."""

    def __init__(self) -> None:
        self._pages: dict[Hashable, tuple[float, T]] = {}
        self._rendering: set[Hashable] = set()
        self._lock = threading.Lock()

    def get(self, key: Hashable, render: Callable[[], T]) -> T:
        with self._lock:
            cached = self._pages.get(key)
            if cached is not None and (time.monotonic() - cached[0] < FRESH_SECONDS or key in self._rendering):
                return cached[1]
            self._rendering.add(key)  # a first render is not waited for: two first requests render twice
        try:
            page_html = render()
        finally:
            with self._lock:
                self._rendering.discard(key)
        with self._lock:
            self._pages[key] = (time.monotonic(), page_html)
        return page_html


def _recent(request: Request) -> RecentPages[PersonalTemplate]:
    recent: RecentPages[PersonalTemplate] = request.app.state.web_versions
    return recent


@router.get("/issues/{week}")
def web_version(request: Request, week: str, ref: str = "") -> Response:
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        issue = session.exec(select(Issue).where(Issue.week == week)).first()
        if issue is None or issue.status not in PUBLISHED:
            raise HTTPException(404)
        # The page is cached with its slots open, the same for every visitor; each request fills in its own
        # referral links (a join), so one visitor's ?ref= never reaches another's page.
        template = _recent(request).get(
            (issue.id, issue.revision), lambda: render_issue(session, issue, settings, web=True).body.html
        )
    html = template.fill(html_values(public_values(settings, week, referral(settings, ref))))
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_CSP, "Cache-Control": "public, max-age=600"})
