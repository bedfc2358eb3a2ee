"""Public pages: sign-up, confirmation, one-click unsubscribe (RFC 8058) and preferences.

No cookies and no logins: each private page is authorised by the signed token in its URL,
which is why the unsubscribe POST needs no CSRF token (RFC 8058 §3.2 forbids asking for one).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel import Session

from pipeline.config import Settings
from pipeline.delivery.providers import ProviderError
from pipeline.email.render import reader_url
from pipeline.errors import InvalidInput, NotFound
from pipeline.store.db import session_scope, write_scope
from pipeline.store.models import saved_id, utcnow
from pipeline.web.pages import message, page, request_settings
from pipeline.web.ratelimit import SlidingWindow, client_key
from subscribers import service
from subscribers.mailer import CAMPAIGN, send_confirmation
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, BadToken, read_timed_token, read_token

router = APIRouter()

CHECK_INBOX = (
    "Check your inbox",
    "If the address is right, a confirmation email is on its way. Open the link in it to start getting the "
    "newsletter.\n\n"
    "Nothing arrived after a few minutes? Look in your spam folder, or sign up again.",
)
#: What a change's redirect says on the page, shown only while it is still true: a second tab, or
#: the page reloaded after a change elsewhere, must not say "subscribed again" to a reader who left.
NOTICES: dict[str, tuple[str, Callable[[Subscriber, bool], bool]]] = {
    "paused": ("Paused. We will not send you anything until the date below.", lambda sub, paused: paused),
    "resumed": (
        "Welcome back: the next issue will reach you.",
        lambda sub, paused: not paused and sub.status is SubscriberStatus.confirmed,
    ),
    "renamed": ("Saved.", lambda sub, paused: True),
    "resubscribed": ("You are subscribed again.", lambda sub, paused: sub.status is SubscriberStatus.confirmed),
    "unsubscribed": (
        "You are unsubscribed. You can come back any time from this page.",
        lambda sub, paused: sub.status is SubscriberStatus.unsubscribed,
    ),
}


#: Where a form that changed something leads (POST/redirect/GET): reloading the page it lands on repeats nothing.
SIGNED_UP = "/subscribe/check-inbox"
ERASED = "/erased"


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _notice(name: str, sub: Subscriber, paused: bool) -> str | None:
    text, still_true = NOTICES.get(name, (None, None))
    return text if still_true and still_true(sub, paused) else None


def signup_limits(settings: Settings) -> tuple[SlidingWindow, SlidingWindow]:
    """Sign-ups per client and per address, counted in the database: one pair per app, made by ``create_app``."""
    return (
        SlidingWindow(settings.database_url, "signup-ip", settings.signup_limit_per_ip, 3600),
        SlidingWindow(settings.database_url, "signup-address", settings.signup_limit_per_address, 3600),
    )


def _limits(request: Request) -> tuple[SlidingWindow, SlidingWindow]:
    limits: tuple[SlidingWindow, SlidingWindow] = request.app.state.signup_limits
    return limits


def _evidence(request: Request, source: str = "form") -> service.Evidence:
    settings = request_settings(request)
    return service.Evidence(
        source=source,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        wording_version=settings.consent_wording_version,
    )


def _subscribe_page(
    request: Request, error: str | None = None, email: str = "", name: str = "", status_code: int = 200
) -> Response:
    # The web version's vote buttons land here (``?vote=…``): say why, not just show the form.
    return page(
        request,
        "web/subscribe.html.j2",
        status_code,
        error=error,
        email=email,
        name=name,
        voting="vote" in request.query_params,
        consent_text=request_settings(request).consent_text,
        action_url="/subscribe",
    )


def _bad_link(request: Request, exc: Exception, purpose: str = CONFIRM) -> Response:
    if purpose in (UNSUBSCRIBE, PREFERENCES):
        # Someone trying to leave must not be steered to the sign-up page: name the ways out that work.
        mailto = request_settings(request).unsubscribe_mailto
        if not mailto:
            return message(
                request,
                "This link does not work",
                f"Sorry, {exc}. To leave the list, use the unsubscribe link in your latest email.",
                400,
            )
        return message(
            request,
            "This link does not work",
            f"Sorry, {exc}. To leave the list, use the unsubscribe link in "
            f"your latest email, or write to {mailto} with the subject “unsubscribe”.",
            400,
            link_url=f"mailto:{mailto}?subject=unsubscribe",
            link_text="Email us to unsubscribe",
        )
    return message(
        request,
        "This link does not work",
        f"Sorry, {exc}. You can sign up again, or use the link in your latest email.",
        400,
        link_url="/subscribe",
        link_text="Go to the sign-up page",
    )


@router.get("/")
@router.get("/subscribe")
def subscribe_form(request: Request) -> Response:
    return _subscribe_page(request)


@router.post("/subscribe")
def subscribe(
    request: Request,
    email: Annotated[str, Form(max_length=400)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",  # past 200 the page says why; past this, a bare 400
    website: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    if website:  # the honeypot: a bot filled the field humans never see; say the same, do nothing
        return _see(SIGNED_UP)
    per_ip, per_address = _limits(request)
    if not per_ip.allow(client_key(request.client.host if request.client else None)):
        return message(
            request, "Too many sign-ups", "Too many sign-ups from your network. Please try again in an hour.", 429
        )
    try:
        address = service.normalise_email(email)
    except InvalidInput:
        return _subscribe_page(
            request, "That does not look like an email address. Please check it and try again.", email, name, 422
        )
    try:
        service.clean_name(name)
    except InvalidInput as exc:
        return _subscribe_page(request, f"Please check your name: {exc}.", email, name, 422)
    # Taken before the sign-up and given back if it emails nobody: checked afterwards, parallel requests
    # all passed the check (9 emails for a limit of 3). Only a sign-up that emails the address counts: a
    # confirmed reader who pressed the button twice must still be able to leave and come back within the hour.
    if not per_address.allow(address):
        return _see(SIGNED_UP)  # the same answer: never reveal anything about the address
    settings = request_settings(request)
    with session_scope(settings.database_url) as session:
        result = service.sign_up(session, address, name, _evidence(request))
    if not result.send_confirmation:
        per_address.release(address)
    else:
        try:
            send_confirmation(settings, result.subscriber)
        except ProviderError:
            return message(
                request,
                "Please try again",
                "We could not send the confirmation email just now. Please try again in a few minutes.",
                503,
            )
    return _see(SIGNED_UP)


@router.get(SIGNED_UP)
def signed_up(request: Request) -> Response:
    settings = request_settings(request)
    title, text = CHECK_INBOX
    if settings.provider == "outbox":  # a demo or a test site: nothing is emailed, say where the email is
        text += f"\n\nThis site does not send email: the confirmation is a file in {settings.outbox_dir / CAMPAIGN}/."
    return message(request, title, text)


@router.get(ERASED)
def erased(request: Request) -> Response:
    return message(
        request,
        "Your data is erased",
        "We deleted your subscription and what we held about you. "
        "We keep only a one-way hash of the address, so that it never gets the newsletter again.",
    )


@router.get("/confirm/{token}")
def confirm(request: Request, token: str) -> Response:
    settings = request_settings(request)
    try:
        subscriber_id = read_timed_token(
            settings.secret_key.get_secret_value(), CONFIRM, token, settings.confirm_max_age_hours * 3600
        )
        with session_scope(settings.database_url) as session:
            sub, _changed = service.confirm(session, subscriber_id, _evidence(request, "email"))
    except (BadToken, NotFound) as exc:
        return _bad_link(request, exc)
    except service.LeftSince as exc:
        return message(
            request,
            "You left the list",
            f"{exc}, so it does not sign you up again. To come back, sign up once more.",
            409,
            link_url="/subscribe",
            link_text="Sign up again",
        )
    return message(
        request,
        "You’re in!",
        f"{service.mask(sub.email)} is confirmed. The next issue of the weekly verdicts will reach you.",
        link_url=reader_url(settings, PREFERENCES, saved_id(sub)),
        link_text="Manage your subscription",
    )


def _with_subscriber(
    request: Request,
    purpose: str,
    token: str,
    action: Callable[[Session, Subscriber], Response | Callable[[], Response]],
) -> Response:
    """``action`` on the reader a signed link names; a POST writes, in the writers' turn. An action may return
    its page as a function: it is then made after the commit, once the turn is over (the one-click unsubscribe
    of a burst after a send)."""
    settings = request_settings(request)
    scope = write_scope if request.method == "POST" else session_scope
    try:
        subscriber_id = read_token(settings.secret_key.get_secret_value(), purpose, token)
        with scope(settings.database_url) as session:
            outcome = action(session, service.get_subscriber(session, subscriber_id))
        return outcome if isinstance(outcome, Response) else outcome()
    except BadToken as exc:
        return _bad_link(request, exc, purpose)
    except NotFound:
        return message(
            request,
            "Nothing here any more",
            "This subscription no longer exists: the address was erased or never confirmed. We will not email it.",
            404,
            link_url="/subscribe",
            link_text="Sign up again",
        )


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, token: str) -> Response:
    """A human or a link scanner: show a button, change nothing."""

    def show(session: Session, sub: Subscriber) -> Response:
        return _unsubscribe_view(request, sub, done=sub.status is SubscriberStatus.unsubscribed)

    return _with_subscriber(request, UNSUBSCRIBE, token, show)


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request, token: str, one_click: Annotated[str, Form(alias="List-Unsubscribe", max_length=100)] = ""
) -> Response:
    """RFC 8058 one-click (a mailbox provider: 200 directly) or the page's button (back to the page, which now
    says it is done: a reload repeats nothing). Idempotent either way."""
    trigger = "one-click" if one_click == "One-Click" else "page"

    def leave(session: Session, sub: Subscriber) -> Callable[[], Response]:
        service.unsubscribe(
            session, sub, trigger=trigger, evidence=_evidence(request, "email" if trigger == "one-click" else "page")
        )
        return lambda: _unsubscribe_view(request, sub, done=True) if trigger == "one-click" else _see(request.url.path)

    response = _with_subscriber(request, UNSUBSCRIBE, token, leave)
    if response.status_code == 404:  # erased: the address is suppressed already, so the request has its effect
        return message(request, "You’re unsubscribed", "This address gets nothing more from us.")
    return response


def _unsubscribe_view(request: Request, sub: Subscriber, *, done: bool) -> Response:
    settings = request_settings(request)
    return page(
        request,
        "web/unsubscribe.html.j2",
        done=done,
        email_masked=service.mask(sub.email),
        action_url=request.url.path,
        preferences_url=reader_url(settings, PREFERENCES, saved_id(sub)),
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
        )
        return page(
            request,
            "web/preferences.html.j2",
            email_masked=service.mask(sub.email),
            name=sub.name,
            status=sub.status.value,
            paused_until=f"{paused:%Y-%m-%d}" if paused else None,
            notice=_notice(notice, sub, paused is not None),
            urls=urls,
        )

    return _with_subscriber(request, PREFERENCES, token, show)


def _act(request: Request, token: str, notice: str, change: Callable[[Session, Subscriber], object]) -> Response:
    """A preferences form: apply the change, then back to the page (POST/redirect/GET)."""

    def run(session: Session, sub: Subscriber) -> Response:
        change(session, sub)
        return _see(f"/preferences/{token}?notice={notice}")

    return _with_subscriber(request, PREFERENCES, token, run)


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
        service.clean_name(name)
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


@router.post("/preferences/{token}/resubscribe")
def resubscribe(request: Request, token: str) -> Response:
    evidence = _evidence(request, "page")
    return _act(request, token, "resubscribed", lambda session, sub: service.resubscribe(session, sub, evidence))


@router.post("/preferences/{token}/unsubscribe")
def unsubscribe_from_preferences(request: Request, token: str) -> Response:
    evidence = _evidence(request, "page")
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
            service.export_data(session, sub),
            headers={"Content-Disposition": 'attachment; filename="my-verdicts-data.json"'},
        )

    return _with_subscriber(request, PREFERENCES, token, download)


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
        service.erase(session, sub, _evidence(request, "page"))
        return _see(ERASED)

    return _with_subscriber(request, PREFERENCES, token, wipe)
