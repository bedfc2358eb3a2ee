"""The editor's growth page: the snippet that embeds the sign-up form on a comparison page, sign-ups per source
per week (and how many of those readers confirmed), and the readers whose shared links brought the most.

Read only: counted from the sign-ups' consent records, which say where each came from (``subscribers.origin``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import Session, col, func, select

from pipeline.config import Settings
from pipeline.store.db import session_scope
from pipeline.store.models import Comparison, utcnow
from pipeline.web.auth import AsEditor
from pipeline.web.pages import page, request_settings
from subscribers.addresses import mask
from subscribers.models import ConsentEvent, ConsentRecord, Subscriber, SubscriberStatus

router = APIRouter(prefix="/editor")

WEEKS = 8
TOP_REFERRERS = 10
#: What the snippet's iframe measures: the embed's form fits it with two or three interests.
FRAME_WIDTH, FRAME_HEIGHT = 360, 260


@dataclass(frozen=True)
class SourceRow:
    source: str
    #: Per week, oldest first: (sign-ups, of which confirmed).
    weeks: list[tuple[int, int]]


def source_of(record: ConsentRecord) -> str:
    """A sign-up's source as the table groups it: the page or comparison, else the campaign, else a referral,
    else the entrance it came through."""
    if record.page:
        return record.page
    if record.utm and record.utm.get("utm_source"):
        return f"utm_source={record.utm['utm_source']}"
    if record.referrer_id is not None:
        return "referral"
    return f"({record.source}, no source)"


def week_starts(now: datetime, settings: Settings) -> list[datetime]:
    """The Mondays (00:00 in the site's time zone) that start the last ``WEEKS`` ISO weeks, oldest first."""
    local = now.astimezone(settings.tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return [monday - timedelta(weeks=back) for back in range(WEEKS - 1, -1, -1)]


def signups_by_source(session: Session, settings: Settings, now: datetime) -> tuple[list[str], list[SourceRow]]:
    """The weeks' labels (``2026-W48``) and one row per source, most sign-ups first."""
    starts = week_starts(now, settings)
    rows = session.exec(
        select(ConsentRecord, Subscriber.confirmed_at)
        .join(Subscriber, col(Subscriber.id) == col(ConsentRecord.subscriber_id), isouter=True)
        .where(ConsentRecord.event == ConsentEvent.signup, col(ConsentRecord.at) >= starts[0])
    ).all()
    counts: Counter[tuple[str, int, bool]] = Counter()
    for record, confirmed_at in rows:
        week = sum(1 for start in starts if record.at >= start) - 1
        counts[source_of(record), week, confirmed_at is not None] += 1
    sources = sorted({key[0] for key in counts}, key=lambda s: (-sum(n for k, n in counts.items() if k[0] == s), s))
    table = [
        SourceRow(s, [(counts[s, w, True] + counts[s, w, False], counts[s, w, True]) for w in range(WEEKS)])
        for s in sources
    ]
    labels = [f"{start.isocalendar().year}-W{start.isocalendar().week:02d}" for start in starts]
    return labels, table


def top_referrers(session: Session) -> list[tuple[str, int]]:
    """The readers with the most confirmed readers referred by them, masked: an editor needs no more."""
    referred = func.count(col(Subscriber.id))
    rows = session.exec(
        select(col(Subscriber.referred_by), referred)
        .where(col(Subscriber.referred_by).is_not(None), Subscriber.status == SubscriberStatus.confirmed)
        .group_by(col(Subscriber.referred_by))
        .order_by(referred.desc(), col(Subscriber.referred_by))
        .limit(TOP_REFERRERS)
    ).all()
    emails = {
        s.id: s.email
        for s in session.exec(select(Subscriber).where(col(Subscriber.id).in_([r for r, _ in rows]))).all()
    }
    return [(mask(emails[r]), n) for r, n in rows if r in emails]


def snippet(settings: Settings, slug: str, title: str) -> str:
    """The HTML an editor pastes into a comparison page (escaped again by the template that shows it)."""
    src = f"{settings.base_url.rstrip('/')}/embed/subscribe?source={quote(slug, safe='')}"
    label = f"Subscribe to {settings.from_name}: {title}".replace("&", "&amp;").replace('"', "&quot;")
    label = label.replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<iframe src="{src}" title="{label}" width="{FRAME_WIDTH}" height="{FRAME_HEIGHT}" '
        'loading="lazy" style="border:0;max-width:100%"></iframe>'
    )


def site_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@router.get("/growth")
def growth(request: Request, csrf: AsEditor, comparison: Annotated[str, Query(max_length=200)] = "") -> Response:
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        comparisons = session.exec(select(Comparison).order_by(col(Comparison.published_at).desc())).all()
        chosen = next((c for c in comparisons if c.slug == comparison), comparisons[0] if comparisons else None)
        weeks, rows = signups_by_source(session, settings, utcnow())
        referrers = top_referrers(session)
        choices = [(c.slug, c.title) for c in comparisons]
        embed = None
        if chosen is not None:
            origin = site_origin(chosen.url)
            embed = {
                "slug": chosen.slug,
                "code": snippet(settings, chosen.slug, chosen.title),
                "origin": origin,
                "allowed": origin in [*settings.embed_origin_list, site_origin(settings.base_url)],
            }
    return page(
        request,
        "web/editor/growth.html.j2",
        csrf=csrf,
        choices=choices,
        embed=embed,
        weeks=weeks,
        rows=rows,
        referrers=referrers,
    )
