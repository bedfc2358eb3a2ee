"""The preferences page and its forms: pause, rename, resubscribe, unsubscribe, download my data, erase.

Each form changes one thing and leads back to the page (POST/redirect/GET), which says what changed
only while it is still true.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session

from pipeline.email.render import forward_url
from pipeline.errors import InvalidInput
from pipeline.store.models import saved_id, utcnow
from pipeline.web.archive import latest_week
from pipeline.web.pages import message, page, request_settings
from subscribers import addresses, interests, privacy, service
from subscribers.lookup import referral_count
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.pages import request_evidence, see_other, with_subscriber
from subscribers.tokens import PREFERENCES

router = APIRouter()

#: What a change's redirect says on the page, shown only while it is still true: a second tab, or
#: the page reloaded after a change elsewhere, must not say "subscribed again" to a reader who left.
NOTICES: dict[str, tuple[str, Callable[[Subscriber, bool], bool]]] = {
    "paused": ("Paused. We will not send you anything until the date below.", lambda sub, paused: paused),
    "resumed": (
        "Welcome back: the next issue will reach you.",
        lambda sub, paused: not paused and sub.status is SubscriberStatus.confirmed,
    ),
    "renamed": ("Saved.", lambda sub, paused: True),
    "interests": ("Saved: your next issue follows your interests.", lambda sub, paused: True),
    "resubscribed": ("You are subscribed again.", lambda sub, paused: sub.status is SubscriberStatus.confirmed),
    "unsubscribed": (
        "You are unsubscribed. You can come back any time from this page.",
        lambda sub, paused: sub.status is SubscriberStatus.unsubscribed,
    ),
}

#: Where erasing leads (POST/redirect/GET): reloading the page it lands on repeats nothing.
ERASED = "/erased"


def _notice(name: str, sub: Subscriber, paused: bool) -> str | None:
    text, still_true = NOTICES.get(name, (None, None))
    return text if still_true and still_true(sub, paused) else None


@router.get(ERASED)
def erased(request: Request) -> Response:
    return message(
        request,
        "Your data is erased",
        "We deleted your subscription and what we held about you. "
        "We keep only a one-way hash of the address, so that it never gets the newsletter again.",
    )


@router.get("/preferences/{token}")
def preferences(request: Request, token: str, notice: str = "") -> Response:
    def show(session: Session, sub: Subscriber) -> Response:
        base = request.url.path
        paused = sub.paused_until if sub.paused_until and sub.paused_until > utcnow() else None
        urls = SimpleNamespace(
            pause=f"{base}/pause",
            name=f"{base}/name",
            resubscribe=f"{base}/resubscribe",
            unsubscribe=f"{base}/unsubscribe",
            data=f"{base}/data.json",
            erase=f"{base}/erase",
            interests=f"{base}/interests",
        )
        week = latest_week(session)
        return page(
            request,
            "web/preferences.html.j2",
            email_masked=addresses.mask(sub.email),
            name=sub.name,
            status=sub.status.value,
            paused_until=f"{paused:%Y-%m-%d}" if paused else None,
            notice=_notice(notice, sub, paused is not None),
            urls=urls,
            referrals=referral_count(session, saved_id(sub)),
            forward_url=forward_url(request_settings(request), week, saved_id(sub)) if week else None,
            categories=interests.categories(session),
            chosen=sub.interests,
            only_interests=sub.only_interests,
        )

    return with_subscriber(request, PREFERENCES, token, show)


def _act(request: Request, token: str, notice: str, change: Callable[[Session, Subscriber], object]) -> Response:
    """A preferences form: apply the change, then back to the page (POST/redirect/GET)."""

    def run(session: Session, sub: Subscriber) -> Response:
        change(session, sub)
        return see_other(f"/preferences/{token}?notice={notice}")

    return with_subscriber(request, PREFERENCES, token, run)


@router.post("/preferences/{token}/pause")
def pause(request: Request, token: str, weeks: Annotated[int, Form(ge=0, le=8)]) -> Response:
    try:
        return _act(
            request, token, "paused" if weeks else "resumed", lambda session, sub: service.pause(session, sub, weeks)
        )
    except service.NothingToPause:
        return message(
            request,
            "Nothing to pause",
            "You are unsubscribed, so we send you nothing already. "
            "To get the newsletter again, subscribe again from your preferences page.",
            409,
            link_url=f"/preferences/{token}",
            link_text="Back to your preferences",
        )


@router.post("/preferences/{token}/name")
def rename(
    request: Request, token: str, name: Annotated[str, Form(max_length=1000)] = ""
) -> Response:  # past 200 the page says why
    try:
        addresses.clean_name(name)
    except InvalidInput as exc:
        return message(
            request,
            "That name did not work",
            f"Please check your name: {exc}. Nothing was changed.",
            422,
            link_url=f"/preferences/{token}",
            link_text="Back to your preferences",
        )
    return _act(request, token, "renamed", lambda session, sub: service.rename(session, sub, name))


@router.post("/preferences/{token}/interests")
def choose_interests(
    request: Request,
    token: str,
    picked: Annotated[list[str], Form(alias="interests")] = [],  # noqa: B006 (FastAPI copies the default)
    only: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        return _act(
            request, token, "interests", lambda session, sub: service.set_interests(session, sub, picked, only == "yes")
        )
    except InvalidInput as exc:
        return message(
            request,
            "Those interests did not work",
            f"Please pick from the list: {exc}. Nothing was changed.",
            422,
            link_url=f"/preferences/{token}",
            link_text="Back to your preferences",
        )


@router.post("/preferences/{token}/resubscribe")
def resubscribe(request: Request, token: str) -> Response:
    evidence = request_evidence(request, "page")
    return _act(request, token, "resubscribed", lambda session, sub: service.resubscribe(session, sub, evidence))


@router.post("/preferences/{token}/unsubscribe")
def unsubscribe_from_preferences(request: Request, token: str) -> Response:
    evidence = request_evidence(request, "page")
    return _act(
        request,
        token,
        "unsubscribed",
        lambda session, sub: service.unsubscribe(session, sub, trigger="page", evidence=evidence),
    )


@router.get("/preferences/{token}/data.json")
def my_data(request: Request, token: str) -> Response:
    def download(session: Session, sub: Subscriber) -> Response:
        return JSONResponse(
            privacy.export_data(session, sub),
            headers={"Content-Disposition": 'attachment; filename="my-verdicts-data.json"'},
        )

    return with_subscriber(request, PREFERENCES, token, download)


@router.post("/preferences/{token}/erase")
def erase(request: Request, token: str, confirm: Annotated[str, Form(max_length=10)] = "") -> Response:
    def wipe(session: Session, sub: Subscriber) -> Response:
        if confirm != "yes":
            return message(
                request,
                "Nothing erased",
                "Tick the box to confirm that you want your data erased.",
                422,
                link_url=f"/preferences/{token}",
                link_text="Back to your preferences",
            )
        privacy.erase(session, sub, request_evidence(request, "page"))
        return see_other(ERASED)

    return with_subscriber(request, PREFERENCES, token, wipe)
