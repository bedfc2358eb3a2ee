"""``/vote/<token>/<tool>/<ship|skip>``: a reader's verdict on one tool, from the email.

A GET (a person, or a mail scanner following links) only shows the question and a
one-button form; the POST from that form records the vote. The signed token is the
authorisation: it names the reader and the issue, and cannot be changed; the reader may
vote on any tool that issue carried.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pipeline.config import Settings
from pipeline.db import session_scope
from pipeline.errors import VerdictsError
from pipeline.votes import VERDICTS, VoteNotifier, community, current_vote, record_vote, voter, webhook_payload
from pipeline.web.app import message, page
from subscribers.tokens import BadToken, VoteClaim, read_vote_token

router = APIRouter()


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _refused(request: Request, exc: Exception) -> Response:
    return message(request, "This voting link does not work", f"Sorry, {exc}.", 400, link_url="/subscribe", link_text="Go to the sign-up page")


_NOTIFIER_LOCK = threading.Lock()


def _notifier(request: Request) -> VoteNotifier:
    state = request.app.state
    with _NOTIFIER_LOCK:  # one sender thread per app, however many requests arrive at once
        if not hasattr(state, "vote_notifier"):
            state.vote_notifier = VoteNotifier(_settings(request))
    return state.vote_notifier


def _claim(request: Request, token: str, tool: str, verdict: str) -> VoteClaim:
    if verdict not in VERDICTS:
        raise BadToken(f"{verdict[:30]!r} is not a verdict: a voting link ends in /ship or /skip")
    return read_vote_token(_settings(request).secret_key.get_secret_value(), token, tool)


@router.get("/vote/{token}/{tool}/{verdict}")
def vote_form(request: Request, token: str, tool: str, verdict: str) -> Response:
    """What a scanner's GET gets too: the question and a button; nothing is recorded."""
    settings = _settings(request)
    try:
        claim = _claim(request, token, tool, verdict)
        with session_scope(settings.database_url) as session:
            reader, voted, comparison = voter(session, claim)
            context = {"tool": voted.name, "comparison": comparison.title, "question": comparison.question, "url": comparison.url,
                       "earlier": current_vote(session, reader, voted)}
    except VerdictsError as exc:
        return _refused(request, exc)
    return page(request, "web/vote.html.j2", verdict=verdict, done=False, action_url=f"/vote/{token}/{tool}/{verdict}", **context)


@router.post("/vote/{token}/{tool}/{verdict}")
def vote(request: Request, token: str, tool: str, verdict: str) -> Response:
    settings = _settings(request)
    try:
        claim = _claim(request, token, tool, verdict)
        with session_scope(settings.database_url) as session:
            result = record_vote(session, claim, verdict)
            split = community(session, result.comparison)
            context = {"tool": result.tool.name, "comparison": result.comparison.title, "question": result.comparison.question,
                       "url": result.comparison.url, "splits": [(t.name, split[t.id]) for t in result.comparison.tools],
                       "changed_from": result.previous if result.changed else None}
    except VerdictsError as exc:
        return _refused(request, exc)
    if result.changed and settings.votes_webhook_url:
        _notifier(request).submit(webhook_payload(result, split[result.tool.id]))
    other = "skip" if verdict == "ship" else "ship"
    return page(request, "web/vote.html.j2", verdict=verdict, done=True, action_url=f"/vote/{token}/{tool}/{other}", other=other, **context)
