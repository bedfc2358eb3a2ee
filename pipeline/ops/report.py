"""An issue's report: what the providers said of its messages, what readers did with it, and the trend.

- per provider (the one that carried each message, ``Delivery.provider``): sent (accepted), delivered, hard and
  soft bounces, complaints — from the providers' verified webhook events, each message counted once per kind;
- unsubscribes, two ways: those a provider reported for one of this issue's messages (its own unsubscribe
  handling), and readers of this issue who left through our one-click or page link between this issue's send
  and the next one's. Our unsubscribe link names the reader, not the issue, so the second count is
  attributed by time: a reader who left in that window after receiving this issue;
- votes per tool cast from this issue's email (a changed vote counts where it was last cast) and the share of
  readers who voted: voters over delivered (over sent when no provider reports deliveries);
- clicks on "Read the full comparison", in aggregate (``ClickCount``; scanners excluded: ``ops.clicks``);
- the same figures for the last ``TREND_ISSUES`` sent issues, this one the newest.

Opens are not tracked at all (no pixel in any email), so no report has them.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from pipeline.content.issues import get_issue, issue_comparisons
from pipeline.delivery.providers.base import EventKind
from pipeline.store.models import (
    ClickCount,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Issue,
    Vote,
    saved_id,
)
from subscribers.csvio import spreadsheet_safe
from subscribers.models import ConsentEvent, ConsentRecord

TREND_ISSUES = 8
#: The triggers of a withdrawal made with our links (``unsubscribe_routes``, the preferences page).
LINK_TRIGGERS = ("one-click", "page")
#: Event kinds per provider row, by the field each fills.
EVENT_FIELDS = {
    EventKind.delivered: "delivered",
    EventKind.bounced: "hard_bounced",
    EventKind.soft_bounced: "soft_bounced",
    EventKind.complained: "complained",
    EventKind.unsubscribed: "unsubscribed_provider",
}


@dataclass(frozen=True)
class ProviderRow:
    provider: str
    sent: int = 0
    delivered: int = 0
    hard_bounced: int = 0
    soft_bounced: int = 0
    complained: int = 0
    unsubscribed_provider: int = 0
    unsubscribed_link: int = 0

    @property
    def unsubscribed(self) -> int:
        return self.unsubscribed_provider + self.unsubscribed_link


COUNTS = [f.name for f in fields(ProviderRow)][1:]


@dataclass(frozen=True)
class ToolRow:
    comparison: str
    tool: str
    ship: int
    skip: int


@dataclass(frozen=True)
class ClickRow:
    comparison: str
    url: str
    clicks: int


@dataclass(frozen=True)
class TrendRow:
    issue_id: int
    week: str
    sent: int
    delivered: int
    voters: int
    clicks: int
    unsubscribed: int

    def pct(self, n: int) -> float | None:
        """``n`` as a share of the readers reached: delivered, or sent when no provider reports deliveries."""
        base = self.delivered or self.sent
        return round(100 * n / base, 1) if base else None


@dataclass(frozen=True)
class IssueReport:
    issue_id: int
    week: str
    subject: str
    status: str
    send_started_at: datetime | None
    #: When the next issue's send started: the end of the window unsubscribes by link are counted in.
    next_send_at: datetime | None
    providers: list[ProviderRow]
    total: ProviderRow
    tools: list[ToolRow]
    voters: int
    clicks: list[ClickRow]
    trend: list[TrendRow]

    @property
    def reached(self) -> tuple[int, str]:
        """The readers the shares are of, and what they are."""
        if self.total.delivered:
            return self.total.delivered, "delivered"
        return self.total.sent, "sent (no provider reported deliveries)"

    @property
    def voter_share(self) -> float | None:
        base = self.reached[0]
        return round(100 * self.voters / base, 1) if base else None


def issue_report(session: Session, issue_id: int, trend_issues: int = TREND_ISSUES) -> IssueReport:
    issue = get_issue(session, issue_id)
    sent = _sent_issues(session)
    upto = sent[: sent.index(issue) + 1] if issue in sent else sent
    providers = provider_rows(session, issue, _next_start(sent, issue))
    return IssueReport(
        issue_id=issue_id,
        week=issue.week,
        subject=issue.subject,
        status=issue.status.value,
        send_started_at=issue.send_started_at,
        next_send_at=_next_start(sent, issue),
        providers=providers,
        total=_sum(providers),
        tools=tool_rows(session, issue),
        voters=voters(session, issue_id),
        clicks=click_rows(session, issue),
        trend=[_trend_row(session, i, _next_start(sent, i)) for i in upto[-trend_issues:]],
    )


def provider_rows(session: Session, issue: Issue, next_send: datetime | None) -> list[ProviderRow]:
    """One row per provider that carried a message of the issue, by name."""
    issue_id = saved_id(issue)
    counts: dict[str, Counter[str]] = {}
    sent = session.exec(
        select(Delivery.provider, func.count())
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.sent)
        .group_by(col(Delivery.provider))
    ).all()
    for provider, n in sent:
        counts.setdefault(provider or "unknown", Counter())["sent"] += n
    events = session.exec(
        select(Delivery.provider, DeliveryEvent.kind, func.count(sa.distinct(col(DeliveryEvent.delivery_id))))
        .join(Delivery, col(Delivery.id) == col(DeliveryEvent.delivery_id))
        .where(Delivery.issue_id == issue_id, col(DeliveryEvent.kind).in_([k.value for k in EVENT_FIELDS]))
        .group_by(col(Delivery.provider), col(DeliveryEvent.kind))
    ).all()
    for provider, kind, n in events:
        counts.setdefault(provider or "unknown", Counter())[EVENT_FIELDS[EventKind(kind)]] += n
    for provider, n in _link_withdrawals(session, issue, next_send):
        counts.setdefault(provider or "unknown", Counter())["unsubscribed_link"] += n
    return [ProviderRow(name, **{k: c[k] for k in COUNTS}) for name, c in sorted(counts.items())]


def _link_withdrawals(session: Session, issue: Issue, until: datetime | None) -> list[tuple[str | None, int]]:
    """Readers sent this issue who left by our links after its send began (and before the next one's)."""
    if issue.send_started_at is None:
        return []
    window = [col(ConsentRecord.at) >= issue.send_started_at]
    if until is not None:
        window.append(col(ConsentRecord.at) < until)
    return list(
        session.exec(
            select(Delivery.provider, func.count(sa.distinct(col(ConsentRecord.subscriber_id))))
            .join(Delivery, col(Delivery.subscriber_id) == col(ConsentRecord.subscriber_id))
            .where(
                Delivery.issue_id == issue.id,
                Delivery.status == DeliveryStatus.sent,
                ConsentRecord.event == ConsentEvent.withdraw,
                col(ConsentRecord.trigger).in_(LINK_TRIGGERS),
                *window,
            )
            .group_by(col(Delivery.provider))
        ).all()
    )


def _sum(rows: list[ProviderRow]) -> ProviderRow:
    return ProviderRow("all", **{k: sum(getattr(r, k) for r in rows) for k in COUNTS})


def tool_rows(session: Session, issue: Issue) -> list[ToolRow]:
    """Every tool of the issue, in the email's order, with the votes cast from this issue's email."""
    counts = Counter(
        {
            (tool_id, verdict): n
            for tool_id, verdict, n in session.exec(
                select(Vote.tool_id, Vote.verdict, func.count())
                .where(Vote.issue_id == issue.id)
                .group_by(col(Vote.tool_id), col(Vote.verdict))
            ).all()
        }
    )
    return [
        ToolRow(c.title, t.name, counts[saved_id(t), "ship"], counts[saved_id(t), "skip"])
        for c in issue_comparisons(session, issue)
        for t in c.tools
    ]


def voters(session: Session, issue_id: int) -> int:
    """Readers who voted from the issue's email (an erased reader's votes still count, but not as a voter)."""
    return session.exec(select(func.count(sa.distinct(col(Vote.subscriber_id)))).where(Vote.issue_id == issue_id)).one()


def click_rows(session: Session, issue: Issue) -> list[ClickRow]:
    counted = dict(
        session.exec(
            select(ClickCount.comparison_id, func.sum(ClickCount.clicks))
            .where(ClickCount.issue_id == issue.id)
            .group_by(col(ClickCount.comparison_id))
        ).all()
    )
    return [ClickRow(c.title, c.url, int(counted.get(saved_id(c), 0))) for c in issue_comparisons(session, issue)]


def _sent_issues(session: Session) -> list[Issue]:
    """The issues whose send has begun, oldest first."""
    query = select(Issue).where(col(Issue.send_started_at).is_not(None)).order_by(col(Issue.send_started_at))
    return list(session.exec(query).all())


def _next_start(sent: list[Issue], issue: Issue) -> datetime | None:
    """When the send after ``issue``'s began (``sent`` is in order): None for the latest, or one not sent."""
    later = sent[sent.index(issue) + 1 :] if issue in sent else []
    return later[0].send_started_at if later else None


def _trend_row(session: Session, issue: Issue, next_send: datetime | None) -> TrendRow:
    total = _sum(provider_rows(session, issue, next_send))
    clicks = session.exec(select(func.sum(ClickCount.clicks)).where(ClickCount.issue_id == issue.id)).one()
    return TrendRow(
        saved_id(issue),
        issue.week,
        total.sent,
        total.delivered,
        voters(session, saved_id(issue)),
        int(clicks or 0),
        total.unsubscribed,
    )


def report_json(report: IssueReport) -> dict[str, object]:
    """The report as plain JSON values (times in ISO 8601, UTC)."""
    data = asdict(report)
    for key in ("send_started_at", "next_send_at"):
        data[key] = data[key].isoformat() if data[key] else None
    for row, source in zip([*data["providers"], data["total"]], [*report.providers, report.total], strict=True):
        row["unsubscribed"] = source.unsubscribed
    reached, label = report.reached
    data["reached"] = {"readers": reached, "counted_as": label}
    data["voter_share_pct"] = report.voter_share
    data["opens"] = "not tracked"
    return data


def report_csv(report: IssueReport) -> str:
    """One long table (section, name, measure, value): every figure of the report, in a shape any
    spreadsheet pivots."""
    rows: list[tuple[str, str, str, object]] = []
    for p in [*report.providers, report.total]:
        rows += [("delivery", p.provider, k, getattr(p, k)) for k in [*COUNTS, "unsubscribed"]]
    rows += [("votes", f"{t.tool} ({t.comparison})", v, getattr(t, v)) for t in report.tools for v in ("ship", "skip")]
    rows += [("votes", "all", "voters", report.voters), ("votes", "all", "voter_share_pct", report.voter_share)]
    rows += [("clicks", c.comparison, "clicks", c.clicks) for c in report.clicks]
    for t in report.trend:
        rows += [("trend", t.week, k, getattr(t, k)) for k in ("sent", "delivered", "voters", "clicks", "unsubscribed")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "name", "measure", "value"))
    writer.writerows(
        (section, spreadsheet_safe(name), measure, "" if value is None else value)
        for section, name, measure, value in rows
    )
    return out.getvalue()
