"""Community verdicts from the inbox: one changeable vote per reader per tool, counted with
the imported community votes, exported for the site, and pushed to it as ``vote.cast`` events
(``pipeline.store.site_events``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from pipeline.content.splits import Split, community_split
from pipeline.errors import InvalidState, NotFound
from pipeline.store.db import insert_ignoring_duplicates
from pipeline.store.models import Comparison, IssueItem, Tool, Vote, saved_id, utcnow
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.tokens import VoteClaim

VERDICTS = ("ship", "skip")


@dataclass(frozen=True)
class VoteResult:
    comparison: Comparison
    tool: Tool
    verdict: str
    previous: str | None  # None: a first vote
    vote_id: int
    at: datetime  # when the reader cast it (the site keeps the latest per vote_id)

    @property
    def changed(self) -> bool:
        return self.previous != self.verdict


def reader_votes(session: Session, tool_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Readers' (ship, skip) per tool, in one query."""
    if not tool_ids:
        return {}
    rows = session.exec(
        select(Vote.tool_id, Vote.verdict, func.count())
        .where(col(Vote.tool_id).in_(tool_ids))
        .group_by(col(Vote.tool_id), col(Vote.verdict))
    ).all()
    counts = {t: [0, 0] for t in tool_ids}
    for tool_id, verdict, n in rows:
        counts[tool_id][VERDICTS.index(verdict)] = n
    return {t: (ship, skip) for t, (ship, skip) in counts.items()}


def votes_from_issue(session: Session, issue_id: int) -> dict[int, int]:
    """Votes per tool that came from one issue's email (a changed vote counts where it was last cast)."""
    rows = session.exec(
        select(Vote.tool_id, func.count()).where(Vote.issue_id == issue_id).group_by(col(Vote.tool_id))
    ).all()
    return dict(rows)


def community(session: Session, comparison: Comparison) -> dict[int, Split]:
    """The community split of each tool: imported votes plus readers' votes."""
    votes = reader_votes(session, [saved_id(t) for t in comparison.tools])
    return {saved_id(t): community_split(t, votes.get(saved_id(t), (0, 0))) for t in comparison.tools}


# Built once, run with each click's values: building a statement cost about as much as running it.
_VOTER = (
    select(Subscriber, Tool, Comparison, IssueItem.id)
    .select_from(Tool)
    .join(Comparison, col(Comparison.id) == Tool.comparison_id)
    .outerjoin(Subscriber, col(Subscriber.id) == sa.bindparam("subscriber_id"))
    .outerjoin(
        IssueItem,
        (col(IssueItem.issue_id) == sa.bindparam("issue_id")) & (col(IssueItem.comparison_id) == Tool.comparison_id),
    )
    .where(col(Tool.id) == sa.bindparam("tool_id"))
)
_MINE = select(Vote.id, Vote.verdict, Vote.voted_at, Vote.changed_at).where(
    Vote.tool_id == sa.bindparam("tool_id"), Vote.subscriber_id == sa.bindparam("subscriber_id")
)
_CHANGE = (
    sa.update(Vote)
    .where(col(Vote.id) == sa.bindparam("vote_id"))
    .values(verdict=sa.bindparam("new_verdict"), changed_at=sa.bindparam("now"), issue_id=sa.bindparam("from_issue"))
)


def voter(session: Session, claim: VoteClaim) -> tuple[Subscriber, Tool, Comparison]:
    """The reader and tool a link is for, in one query; a reader who left (or was erased) can no longer vote."""
    keys = {"subscriber_id": claim.subscriber_id, "issue_id": claim.issue_id, "tool_id": claim.tool_id}
    row = session.exec(_VOTER, params=keys).first()
    reader = row[0] if row else session.get(Subscriber, claim.subscriber_id)
    if reader is None or reader.status is not SubscriberStatus.confirmed:
        raise InvalidState("this voting link no longer works: it belongs to a subscription that has ended")
    if row is None:
        raise NotFound("this tool is no longer on the site")
    if row[3] is None:  # the token allows the tools of its own issue only
        raise NotFound("this tool was not in the issue this link came from")
    return reader, row[1], row[2]


def current_vote(session: Session, reader: Subscriber, tool: Tool) -> str | None:
    """The verdict this reader gave this tool, if any: the vote page says so before the button."""
    row = session.exec(_MINE, params={"tool_id": tool.id, "subscriber_id": reader.id}).first()
    return row[1] if row else None  # (id, verdict, voted_at, changed_at)


def record_vote(session: Session, claim: VoteClaim, verdict: str) -> VoteResult:
    """Insert or change the reader's vote; sending the same vote again changes nothing. A few plain
    statements: this runs once per click, in the writers' turn, during the burst after a send."""
    if verdict not in VERDICTS:
        raise NotFound(f"{verdict!r} is not a verdict")
    reader, tool, comparison = voter(session, claim)
    mine, now = {"tool_id": tool.id, "subscriber_id": reader.id}, utcnow()
    existing = session.exec(_MINE, params=mine).first()
    if existing is None:
        values = {**mine, "issue_id": claim.issue_id, "verdict": verdict, "voted_at": now}
        vote_id = session.execute(insert_ignoring_duplicates(session, Vote), values).scalar()
        if vote_id is not None:
            return VoteResult(comparison, tool, verdict, None, vote_id, now)
        # The same reader's other tab won the race: treat it as a change.
        existing = session.exec(_MINE, params=mine).one()
    row_id, previous, voted_at, changed_at = existing
    vote_id = cast(int, row_id)  # read back from a stored row: never None
    if previous == verdict:
        return VoteResult(comparison, tool, verdict, previous, vote_id, changed_at or voted_at)
    session.execute(_CHANGE, {"vote_id": vote_id, "new_verdict": verdict, "now": now, "from_issue": claim.issue_id})
    return VoteResult(comparison, tool, verdict, previous, vote_id, now)


#: The columns of ``export_rows``: an export before any comparison still has its whole header.
EXPORT_COLUMNS = (
    "comparison",
    "comparison_title",
    "tool",
    "tool_name",
    "imported_ship",
    "imported_skip",
    "reader_ship",
    "reader_skip",
    "ship",
    "skip",
    "ship_pct",
)


def export_rows(session: Session, published_by: datetime | None = None) -> list[dict[str, object]]:
    """Per comparison and tool: imported, readers' and combined votes (no reader data); with ``published_by``,
    only the comparisons published by then (the public feed names no comparison before the site does)."""
    query = select(Comparison).order_by(col(Comparison.published_at).desc())
    if published_by is not None:
        query = query.where(col(Comparison.published_at) <= published_by)
    comparisons = list(session.exec(query))
    votes = reader_votes(session, [saved_id(t) for c in comparisons for t in c.tools])
    rows: list[dict[str, object]] = []
    for c in comparisons:
        for t in c.tools:
            ship, skip = votes.get(saved_id(t), (0, 0))
            split = community_split(t, (ship, skip))
            rows.append(
                dict(
                    zip(
                        EXPORT_COLUMNS,
                        (
                            c.slug,
                            c.title,
                            t.slug,
                            t.name,
                            t.community_ship or 0,
                            t.community_skip or 0,
                            ship,
                            skip,
                            split.ship,
                            split.skip,
                            split.pct,
                        ),
                        strict=True,
                    )
                )
            )
    return rows


def vote_data(result: VoteResult) -> dict[str, object]:
    """What ``vote.cast`` tells the site (no reader: the vote's id is enough to keep the latest per vote); the
    sender adds the tool's community split as counted when it sends."""
    return {
        "vote_id": result.vote_id,
        "comparison": result.comparison.slug,
        "tool": result.tool.slug,
        "verdict": result.verdict,
        "previous": result.previous,
        "at": result.at.isoformat(),
    }


def community_now(session: Session, comparison: str, tool: str) -> dict[str, int | None] | None:
    """A tool's community split now, by slugs; None once a re-import removed the tool."""
    row = session.exec(select(Tool).join(Comparison).where(Comparison.slug == comparison, Tool.slug == tool)).first()
    if row is None:
        return None
    split = community_split(row, reader_votes(session, [saved_id(row)]).get(saved_id(row), (0, 0)))
    return {"ship": split.ship, "skip": split.skip, "ship_pct": split.pct}
