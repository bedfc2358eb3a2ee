"""`verdicts issue report ID`: an issue's report (``pipeline.ops.report``) as Rich tables, or CSV or JSON on
stdout for a spreadsheet or a script."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.console import out, ready
from pipeline.ops.report import COUNTS, IssueReport, issue_report, report_csv, report_json
from pipeline.store.db import session_scope


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def issue_report_command(
    issue_id: int,
    output: Annotated[
        Format, typer.Option("--format", help="table (readable), csv or json (to stdout)")
    ] = Format.table,
) -> None:
    """Sent, delivered, bounced, complained and unsubscribed per provider; votes; clicks; the trend."""
    settings = ready()
    with session_scope(settings.database_url) as session:
        report = issue_report(session, issue_id)
    if output is Format.csv:
        print(report_csv(report), end="")
    elif output is Format.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        _print_tables(report)


def _print_tables(report: IssueReport) -> None:
    out.print(f"Issue {report.issue_id} ({report.week}) — {report.status}: {report.subject}", highlight=False)
    delivery = Table("provider", *(c.replace("_", " ") for c in COUNTS), title="Delivery")
    for p in [*report.providers, report.total]:
        delivery.add_row(p.provider, *(f"{getattr(p, c):,}" for c in COUNTS))
    out.print(delivery)
    share = f" ({report.voter_share}% of {report.reached[0]:,} {report.reached[1]})" if report.voter_share else ""
    votes = Table("tool", "comparison", "ship", "skip", title=f"Votes: {report.voters:,} readers voted{share}")
    for t in report.tools:
        votes.add_row(t.tool, t.comparison, str(t.ship), str(t.skip))
    out.print(votes)
    clicks = Table("comparison", "clicks", title='Clicks on "Read the full comparison" (scanners excluded)')
    for c in report.clicks:
        clicks.add_row(c.comparison, f"{c.clicks:,}")
    out.print(clicks)
    trend = Table("issue", "sent", "delivered", "voters", "clicks", "unsubscribed", title="Trend")
    for r in report.trend:
        trend.add_row(r.week, *(f"{n:,}" for n in (r.sent, r.delivered, r.voters, r.clicks, r.unsubscribed)))
    out.print(trend)
    out.print("Opens are not tracked (no pixel in any email).", highlight=False)
