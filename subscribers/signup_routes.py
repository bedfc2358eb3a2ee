"""The sign-up pages: the form, its POST (honeypot and rate limits), "check your inbox" and the confirmation page.

Double opt-in: the form only sends the link; the link's page shows one button, and the reader is on the list once
they press it (a mail scanner that opens every link in an email confirms nobody).

The form's answer never waits on the provider and never tells a known address from an unknown one: every valid
sign-up does the same work (the two limits), is answered 303 to "check your inbox", and is then carried out
after the answer is sent (``_carry_out``, a background task in the same process). ``accept_sign_up`` is those
steps, for every entrance: this form, the embedded one (``embed_routes``) and the API (``api_routes``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from pipeline.config import Settings
from pipeline.delivery.welcome import welcome_reader
from pipeline.email.render import reader_url
from pipeline.errors import InvalidInput
from pipeline.store.db import session_scope
from pipeline.store.models import saved_id
from pipeline.web.pages import message, page, request_settings
from pipeline.web.ratelimit import SlidingWindow, client_key
from subscribers import addresses, interests, origin, service
from subscribers.consent import Evidence
from subscribers.mailer import CAMPAIGN, send_confirmation
from subscribers.models import Subscriber
from subscribers.origin import Origin
from subscribers.pages import request_evidence, see_other, with_subscriber
from subscribers.tokens import CONFIRM, PREFERENCES, read_timed_claim

router = APIRouter()
log = logging.getLogger(__name__)

CHECK_INBOX = (
    "Check your inbox",
    "If the address is right, a confirmation email is on its way. Open the link in it to start getting the "
    "newsletter.\n\n"
    "Nothing arrived after a few minutes? Look in your spam folder, or sign up again.",
)

#: Where the form leads (POST/redirect/GET): reloading the page it lands on repeats nothing.
SIGNED_UP = "/subscribe/check-inbox"


def signup_limits(settings: Settings) -> tuple[SlidingWindow, SlidingWindow]:
    """Sign-ups per client and per address, counted in the database: one pair per app, made by ``create_app``."""
    return (
        SlidingWindow(settings.database_url, "signup-ip", settings.signup_limit_per_ip, 3600),
        SlidingWindow(settings.database_url, "signup-address", settings.signup_limit_per_address, 3600),
    )


def _limits(request: Request) -> tuple[SlidingWindow, SlidingWindow]:
    limits: tuple[SlidingWindow, SlidingWindow] = request.app.state.signup_limits
    return limits


@dataclass(frozen=True)
class Refusal:
    """Why a sign-up was refused at once: the field at fault (None: the client's limit), what to say, the status."""

    field: str | None
    text: str
    status: int


TOO_MANY = Refusal(None, "Too many sign-ups from your network. Please try again in an hour.", 429)


async def posted_extras(request: Request) -> tuple[Origin, list[str]]:
    """A sign-up form's hidden origin fields (bad ones dropped) and its ticked interests."""
    form = await request.form()
    return origin.lenient(form), [value for value in form.getlist("interests") if isinstance(value, str)]


Extras = Annotated[tuple[Origin, list[str]], Depends(posted_extras)]


def form_context(
    request: Request, came_from: Origin | None = None, picked: list[str] | None = None
) -> dict[str, object]:
    """What the form and the embed show besides the address: the interests to tick and, as hidden fields, where
    the reader came from (the page's own query string, on first showing)."""
    with session_scope(request_settings(request).database_url) as session:
        choices = interests.categories(session)
    return {
        "categories": choices,
        "picked": picked or [],
        "origin_fields": (came_from or origin.lenient(request.query_params)).fields(),
        "consent_text": request_settings(request).consent_text,
    }


def signup_page(
    request: Request,
    template: str,
    action_url: str,
    error: str | None = None,
    email: str = "",
    name: str = "",
    status_code: int = 200,
    extras: tuple[Origin, list[str]] | None = None,
    **context: object,
) -> Response:
    """The sign-up form, as a whole page or embedded: what was typed (after a refusal), the interests to tick and,
    as hidden fields, where the reader came from."""
    return page(
        request,
        template,
        status_code,
        error=error,
        email=email,
        name=name,
        action_url=action_url,
        **form_context(request, *(extras or (None, None))),
        **context,
    )


def _subscribe_page(request: Request, *args: Any, **kwargs: Any) -> Response:
    # The web version's vote buttons land here (``?vote=…``): say why, not just show the form.
    voting = "vote" in request.query_params
    return signup_page(request, "web/subscribe.html.j2", "/subscribe", *args, voting=voting, **kwargs)


@router.get("/")
@router.get("/subscribe")
def subscribe_form(request: Request) -> Response:
    return _subscribe_page(request)


@router.post("/subscribe")
def subscribe(
    request: Request,
    background: BackgroundTasks,
    extras: Extras,
    email: Annotated[str, Form(max_length=400)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",  # past 200 the page says why; past this, a bare 400
    website: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    if website:  # the honeypot: a bot filled the field humans never see; say the same, do nothing
        return see_other(SIGNED_UP)
    refused = accept_sign_up(request, background, email, name, request_evidence(request), *extras)
    if refused is None:
        return see_other(SIGNED_UP)  # the same answer, in the same time: never reveal anything about the address
    if refused.field is None:
        return message(request, "Too many sign-ups", refused.text, refused.status)
    return _subscribe_page(request, refused.text, email, name, refused.status, extras)


def accept_sign_up(
    request: Request,
    background: BackgroundTasks,
    email: str,
    name: str,
    evidence: Evidence,
    came_from: Origin,
    picked: list[str] | None,
) -> Refusal | None:
    """Every entrance's steps after its own checks: the address, the name and the interests (``picked``; None
    leaves a pending reader's as they are), the client's limit, the mailbox's limit, then the sign-up after the
    answer. None: accepted, or dropped by the mailbox's limit, which the answer must not reveal."""
    settings = request_settings(request)
    per_ip, per_address = _limits(request)
    try:
        address = addresses.normalise_email(email)
    except InvalidInput:
        return Refusal("email", "That does not look like an email address. Please check it and try again.", 422)
    try:
        addresses.clean_name(name)
    except InvalidInput as exc:
        return Refusal("name", f"Please check your name: {exc}.", 422)
    try:
        chosen = None if picked is None else _checked_interests(settings, picked)
    except InvalidInput as exc:
        return Refusal("interests", f"Please check your interests: {str(exc).removeprefix('interests: ')}.", 422)
    # Counted once the request is one that would sign up (a typo emails nobody, so it must not use up a shared
    # network's hour); the checks above take the same time for any address, so the order reveals nothing.
    if not per_ip.allow(client_key(request.client.host if request.client else None)):
        return TOO_MANY
    # Taken before the sign-up and given back if it emails nobody: checked afterwards, parallel requests
    # all passed the check (9 emails for a limit of 3). Only a sign-up that emails the address counts: a
    # confirmed reader who pressed the button twice must still be able to leave and come back within the hour.
    # Counted per mailbox, not per spelling: a+1@…, a+2@…, A@… are one inbox.
    if per_address.allow(addresses.mailbox(address)):
        evidence = origin.evidence_with(evidence, came_from)
        background.add_task(_carry_out, settings, per_address, address, name, evidence, came_from.ref, chosen)
    return None


def _checked_interests(settings: Settings, picked: list[str]) -> list[str]:
    with session_scope(settings.database_url) as session:
        return interests.clean_interests(session, picked)


def _carry_out(
    settings: Settings,
    per_address: SlidingWindow,
    address: str,
    name: str,
    evidence: Evidence,
    ref: str | None = None,
    chosen: list[str] | None = None,
) -> None:
    """The sign-up itself, after the answer was sent: nobody waits on it, so nothing may be lost silently. A
    failure is logged (the reader, who saw "check your inbox", can sign up again)."""
    try:
        with session_scope(settings.database_url) as session:
            referrer = origin.referrer_id(session, settings.secret_key.get_secret_value(), ref)
            result = service.sign_up(session, address, name, replace(evidence, referrer_id=referrer), chosen)
        if not result.send_confirmation:
            per_address.release(addresses.mailbox(address))
            return
        send_confirmation(settings, result.subscriber, result.left_at)
    except Exception as exc:  # after the answer, a log line is the only place it can go
        log.warning(
            "the sign-up of %s failed, no confirmation email was sent (they can sign up again): %s: %s",
            addresses.mask(address),
            type(exc).__name__,
            str(exc).replace(address, addresses.mask(address))[:300],
        )


@router.get(SIGNED_UP)
def signed_up(request: Request) -> Response:
    settings = request_settings(request)
    title, text = CHECK_INBOX
    if settings.provider == "outbox":  # a demo or a test site: nothing is emailed, say where the email is
        text += f"\n\nThis site does not send email: the confirmation is a file in {settings.outbox_dir / CAMPAIGN}/."
    return message(request, title, text)


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str) -> Response:
    """A human or a mail scanner (Safe Links, Mimecast) opening the emailed link: say what confirming does and
    show one button; change nothing. A reader confirmed already sees that they are in."""

    def show(session: Session, sub: Subscriber) -> Response:
        if not service.confirmable(sub, _sent_after(request, token)):
            return _confirmed_view(request, sub)
        return page(
            request,
            "web/confirm.html.j2",
            email_masked=addresses.mask(sub.email),
            consent_text=request_settings(request).consent_text,
            action_url=request.url.path,
        )

    try:
        return with_subscriber(request, CONFIRM, token, show, max_age_seconds=_confirm_max_age(request))
    except service.LeftSince as exc:
        return _left_since(request, exc)


@router.post("/confirm/{token}")
def confirm(request: Request, background: BackgroundTasks, token: str) -> Response:
    """The page's button: double opt-in's second step, then back to the link's page (POST/redirect/GET), which
    now says the reader is in. A second press (a double click, an old tab) confirms nothing more. The welcome
    email, queued with the confirmation, is sent after the answer: the page never waits on the provider."""

    def confirm_reader(session: Session, sub: Subscriber) -> Response:
        evidence = request_evidence(request, "email")
        _, changed = service.confirm(session, saved_id(sub), evidence, _sent_after(request, token))
        if changed:  # run after the commit: the task finds the queued welcome
            background.add_task(welcome_reader, request_settings(request), saved_id(sub))
        return see_other(request.url.path)

    try:
        return with_subscriber(request, CONFIRM, token, confirm_reader, max_age_seconds=_confirm_max_age(request))
    except service.LeftSince as exc:
        return _left_since(request, exc)


def _sent_after(request: Request, token: str) -> int | None:
    """The departure a link sent to a reader who had left names (``service.sign_up``); the token is checked."""
    secret = request_settings(request).secret_key.get_secret_value()
    return read_timed_claim(secret, CONFIRM, token, _confirm_max_age(request))[1]


def _confirm_max_age(request: Request) -> int:
    return request_settings(request).confirm_max_age_hours * 3600


def _confirmed_view(request: Request, sub: Subscriber) -> Response:
    return message(
        request,
        "You’re in!",
        f"{addresses.mask(sub.email)} is confirmed. The next issue of the weekly verdicts will reach you.",
        link_url=reader_url(request_settings(request), PREFERENCES, saved_id(sub)),
        link_text="Manage your subscription",
    )


def _left_since(request: Request, exc: service.LeftSince) -> Response:
    # A mail scanner re-reading the old email, or the reader, must not undo an unsubscribe.
    return message(
        request,
        "You left the list",
        f"{exc}, so it does not sign you up again. To come back, sign up once more.",
        409,
        link_url="/subscribe",
        link_text="Sign up again",
    )
