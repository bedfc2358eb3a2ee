"""``/vote/<token>/<tool>/<ship|skip>``: a reader's verdict on one tool, from the email.

A GET (a person, or a mail scanner following links) only shows the question and a
one-button form; the POST from that form records the vote. The signed token is the
authorisation: it names the reader and the issue, and cannot be changed; the reader may
vote on any tool that issue carried.
"""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import col, select

from pipeline.content.splits import Split, community_split
from pipeline.content.votes import VERDICTS, VoteResult, current_vote, reader_votes, record_vote, vote_data, voter
from pipeline.delivery.site_webhooks import SiteWebhookSender
from pipeline.errors import VerdictsError
from pipeline.store.db import session_scope, write_scope
from pipeline.store.models import Tool, saved_id
from pipeline.store.site_events import enqueue
from pipeline.web.archive import FRESH_SECONDS
from pipeline.web.pages import message, page, request_settings
from subscribers.tokens import BadToken, VoteClaim, read_vote_token

router = APIRouter()


def _refused(request: Request, exc: Exception) -> Response:
    return message(
        request,
        "This voting link does not work",
        f"Sorry, {exc}.",
        400,
        link_url="/subscribe",
        link_text="Go to the sign-up page",
    )


def _claim(request: Request, token: str, tool: str, verdict: str) -> VoteClaim:
    if verdict not in VERDICTS:
        raise BadToken(f"{verdict[:30]!r} is not a verdict: a voting link ends in /ship or /skip")
    return read_vote_token(request_settings(request).secret_key.get_secret_value(), token, tool)


@router.get("/vote/{token}/{tool}/{verdict}")
def vote_form(request: Request, token: str, tool: str, verdict: str) -> Response:
    """What a scanner's GET gets too: the question and a button; nothing is recorded."""
    settings = request_settings(request)
    try:
        claim = _claim(request, token, tool, verdict)
        with session_scope(settings.database_url) as session:
            reader, voted, comparison = voter(session, claim)
            context = {
                "tool": voted.name,
                "comparison": comparison.title,
                "question": comparison.question,
                "url": comparison.url,
                "earlier": current_vote(session, reader, voted),
            }
    except VerdictsError as exc:
        return _refused(request, exc)
    return page(
        request,
        "web/vote.html.j2",
        200,
        verdict=verdict,
        done=False,
        action_url=f"/vote/{token}/{tool}/{verdict}",
        **context,
    )


class FreshSplits:
    """Each comparison's community split as counted at most FRESH_SECONDS ago, moved at once by the votes
    this web process records: a click in the burst after a send does not count every vote again (1.3 ms a
    click at 50,000 votes, and more with more). Votes through another process show within the minute, as on
    the web version."""

    def __init__(self) -> None:
        self._counted: dict[int, tuple[float, list[Tool], dict[int, list[int]]]] = {}
        self._lock = threading.Lock()

    def after(self, url: str, result: VoteResult) -> list[tuple[Tool, Split]]:
        """Each tool of the comparison ``result`` was cast in, with its split, that vote included."""
        key, voted, now = saved_id(result.comparison), saved_id(result.tool), time.monotonic()
        with self._lock:
            counted_at, tools, votes = self._counted.get(key, (-FRESH_SECONDS, [], {}))
            # A tool the count has not seen (a re-import added it) means a count of another set of tools.
            fresh = now - counted_at < FRESH_SECONDS and voted in votes
            if fresh and result.changed:
                if result.previous is not None:
                    votes[voted][VERDICTS.index(result.previous)] -= 1
                votes[voted][VERDICTS.index(result.verdict)] += 1
            if fresh:
                return _splits_of(tools, votes)
        with session_scope(url) as session:  # after the vote's commit: the count has it
            tools = list(session.exec(select(Tool).where(Tool.comparison_id == key).order_by(col(Tool.id))))
            votes = {t: list(n) for t, n in reader_votes(session, [saved_id(t) for t in tools]).items()}
        with self._lock:
            self._counted[key] = (now, tools, votes)
            return _splits_of(tools, votes)


def _splits_of(tools: list[Tool], votes: dict[int, list[int]]) -> list[tuple[Tool, Split]]:
    return [(t, community_split(t, (votes[saved_id(t)][0], votes[saved_id(t)][1]))) for t in tools]


def _splits(request: Request) -> FreshSplits:
    splits: FreshSplits = request.app.state.fresh_splits
    return splits


@router.post("/vote/{token}/{tool}/{verdict}")
def vote(request: Request, token: str, tool: str, verdict: str) -> Response:
    settings = request_settings(request)
    try:
        claim = _claim(request, token, tool, verdict)
        with write_scope(settings.database_url) as session:
            result = record_vote(session, claim, verdict)
            if result.changed:
                enqueue(session, "vote.cast", vote_data(result), settings)
        splits = _splits(request).after(settings.database_url, result)
    except VerdictsError as exc:
        return _refused(request, exc)
    sender: SiteWebhookSender | None = request.app.state.site_webhooks
    if result.changed and sender is not None:
        sender.wake()  # the site hears of the vote now, not at the sender's next look
    other = "skip" if verdict == "ship" else "ship"
    comparison = result.comparison
    return page(
        request,
        "web/vote.html.j2",
        verdict=verdict,
        done=True,
        action_url=f"/vote/{token}/{tool}/{other}",
        other=other,
        tool=result.tool.name,
        comparison=comparison.title,
        question=comparison.question,
        url=comparison.url,
        splits=[(t.name, split) for t, split in splits],
        changed_from=result.previous if result.changed else None,
    )
