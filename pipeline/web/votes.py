"""``/vote/<token>/<ship|skip>``: a reader's verdict on one tool, from the email.

A GET (a person, or a mail scanner following links) only shows the question and a
one-button form; the POST from that form records the vote. The signed token is the
authorisation: it names the reader, the tool and the issue, and cannot be changed.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response

from pipeline.config import Settings
from pipeline.db import session_scope
from pipeline.errors import VerdictsError
from pipeline.votes import VERDICTS, community, notify, record_vote, voter, webhook_payload
from pipeline.web.app import message, page
from subscribers.tokens import BadToken, read_vote_token

router = APIRouter()


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _refused(request: Request, exc: Exception) -> Response:
    return message(request, "This voting link does not work", f"Sorry, {exc}.", 400, link_url="/subscribe", link_text="Go to the sign-up page")


def _splits(session, comparison) -> list[tuple[str, object]]:
    splits = community(session, comparison)
    return [(t.name, splits[t.id]) for t in comparison.tools]


@router.get("/vote/{token}/{verdict}")
def vote_form(request: Request, token: str, verdict: str) -> Response:
    settings = _settings(request)
    if verdict not in VERDICTS:
        return _refused(request, VerdictsError("the link was cut short"))
    try:
        claim = read_vote_token(settings.secret_key.get_secret_value(), token)
        with session_scope(settings.database_url) as session:
            _, tool, comparison = voter(session, claim)
            context = {"tool": tool.name, "comparison": comparison.title, "question": comparison.question, "url": comparison.url}
    except (BadToken, VerdictsError) as exc:
        return _refused(request, exc)
    return page(request, "web/vote.html.j2", verdict=verdict, done=False, action_url=f"/vote/{token}/{verdict}", **context)


@router.post("/vote/{token}/{verdict}")
def vote(request: Request, token: str, verdict: str, background: BackgroundTasks) -> Response:
    settings = _settings(request)
    if verdict not in VERDICTS:
        return _refused(request, VerdictsError("the link was cut short"))
    try:
        claim = read_vote_token(settings.secret_key.get_secret_value(), token)
        with session_scope(settings.database_url) as session:
            result = record_vote(session, claim, verdict)
            splits = _splits(session, result.comparison)
            split = community(session, result.comparison)[result.tool.id]
            context = {"tool": result.tool.name, "comparison": result.comparison.title, "question": result.comparison.question,
                       "url": result.comparison.url, "splits": splits, "changed_from": result.previous if result.changed else None}
    except (BadToken, VerdictsError) as exc:
        return _refused(request, exc)
    if result.changed and settings.votes_webhook_url:
        background.add_task(notify, settings, webhook_payload(result, split))  # after the page is sent
    other = "skip" if verdict == "ship" else "ship"
    return page(request, "web/vote.html.j2", verdict=verdict, done=True, action_url=f"/vote/{token}/{other}", other=other, **context)
