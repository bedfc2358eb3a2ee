"""Each reader's message as a provider is handed it (the compliance headers, the campaign's ids), and the
preflight that builds every copy before a send starts: a message that cannot be built never reaches `sending`."""

from __future__ import annotations

import dataclasses
import email.errors
import secrets
from collections.abc import Callable
from email.utils import formataddr
from functools import lru_cache
from typing import cast
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, func, select
from sqlmodel.sql.expression import Select

from pipeline.config import Settings
from pipeline.content.issues import get_issue
from pipeline.content.safe_text import SINGLE_LINE_REFUSED, inert, text_problem
from pipeline.delivery.ledger import Claim
from pipeline.delivery.providers import OutgoingMessage, Provider, get_provider
from pipeline.delivery.providers.mime import build_mime
from pipeline.email.editions import Editions
from pipeline.email.render import Recipient, RenderedIssue, personal_values, preflight
from pipeline.errors import InvalidInput
from pipeline.store.db import keyset_pages
from pipeline.store.models import Delivery, DeliveryStatus, Issue, IssueStatus, utcnow
from subscribers.models import Subscriber, SubscriberStatus


class UnbuildableMessage(InvalidInput):
    """A message the provider cannot be handed (a line break in a header, …): it was not sent."""


#: What building a message raises for content it cannot carry (the stdlib's header checks, orjson's UTF-8).
BUILD_ERRORS = (ValueError, TypeError, email.errors.MessageError)


#: A reader as the preflight pages them: id, address, name, interests (JSON text), "only my interests".
ReaderRows = Select[int, str, str, str, bool]


#: A reader's interests as stored: JSON text, compared as it is and read once per distinct text.
_INTERESTS = sa.cast(col(Subscriber.interests), sa.Text).label("interests")


def _sid(column: int | None) -> sa.Label[int]:
    """A reader's id as the query's ``sid``, typed as never NULL where the query ensures it."""
    return sa.type_coerce(col(column), sa.Integer).label("sid")


def _with_choice(query: Select[int, str, str, str]) -> ReaderRows:
    """``query`` with "only my interests" added (SQLModel's ``select`` types four columns at most)."""
    return cast("ReaderRows", query.add_columns(col(Subscriber.only_interests)))


def _readers(issue: Issue) -> tuple[ReaderRows, Mapped[int | None]]:
    """Who the send is for, and the key to page them by: the audience an approved issue's send is about to
    freeze, else the deliveries still waiting."""
    if issue.status is IssueStatus.approved:
        # sid is never NULL: a saved reader's key (SQLModel types every id as optional).
        readers = _with_choice(select(_sid(Subscriber.id), col(Subscriber.email), col(Subscriber.name), _INTERESTS))
        return readers.where(col(Subscriber.status) == SubscriberStatus.confirmed), col(Subscriber.id)
    waiting = (
        _with_choice(select(_sid(Delivery.subscriber_id), col(Delivery.email), col(Subscriber.name), _INTERESTS))
        .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id))
        .where(
            col(Delivery.issue_id) == issue.id,
            col(Delivery.status).in_([DeliveryStatus.pending, DeliveryStatus.sending]),
        )
    )
    # The inner join keeps only deliveries whose reader still exists: sid is never NULL.
    return waiting, col(Delivery.id)


def check_copies(session: Session, editions: Editions, settings: Settings, provider: Provider | None = None) -> None:
    """Preflight every line-up that will be sent against the bounds of who is left to send to (two queries,
    not a pass over the list), with each copy built as the provider will be handed it: a message that cannot
    be built never starts a send. Each line-up checked is rendered, once, for the send to use."""
    issue = get_issue(session, editions.issue.issue_id)
    query, key = _readers(issue)
    found = query.subquery()
    longest, largest = session.exec(select(func.max(func.length(found.c.name)), func.max(found.c.sid))).one()
    choices = session.exec(select(found.c.interests, found.c.only_interests).distinct()).all()
    lineups = editions.lineups
    own = provider is None
    provider = provider or get_provider(settings)
    try:
        for lineup in sorted({lineups.of_stored(i, o) for i, o in choices} or {lineups.issue_order}):
            rendered = editions.get(lineup)
            readers = (
                Recipient(sid, address, name)
                for sid, address, name, interests, only in keyset_pages(session, query, key)
                if lineups.of_stored(interests, only) == lineup
            )
            preflight(
                rendered,
                readers,
                settings,
                longest_name=max(longest or 0, len("there")),
                largest_id=largest or 0,
                build=_builder(rendered, settings, provider, campaign_key(issue)),
            )
            editions.checked.add(lineup)
    finally:
        if own:
            provider.close()


def _builder(
    rendered: RenderedIssue, settings: Settings, provider: Provider, campaign: str
) -> Callable[[Recipient], None]:
    """The check that one reader's message can be handed to ``provider``; it raises UnbuildableMessage, naming them."""

    def build(recipient: Recipient) -> None:
        message = build_message(rendered, recipient, settings, delivery_id=recipient.subscriber_id, campaign=campaign)
        if problem := payload_problem(provider, message, settings, campaign):
            raise UnbuildableMessage(
                f"issue {rendered.issue_id} cannot be sent: the message for {recipient.email} "
                f"{problem}. Nothing was sent: {_remedy(rendered.issue_id)}"
            )

    return build


def check_batch(
    rendered: RenderedIssue, recipients: list[Recipient], settings: Settings, provider: Provider, campaign: str
) -> None:
    """The preflight of one line-up's copies in a claimed batch: for a line-up the send's preflight did not
    meet (a reader changed their interests since, or a parallel worker, whose parent checked the rest)."""
    preflight(rendered, recipients, settings, build=_builder(rendered, settings, provider, campaign))


def _remedy(issue_id: int) -> str:
    return (
        f"unapprove it (`verdicts issue unapprove {issue_id}`), correct the subject or preheader "
        f"(`verdicts issue edit {issue_id}`), a comparison (import it again) or the reader, then approve it "
        "and send again"
    )


def payload_problem(provider: Provider, message: OutgoingMessage, settings: Settings, campaign: str) -> str | None:
    """Why ``message`` cannot be handed to ``provider``, or None. It is built as the provider would be handed it:
    the MIME message every provider's mail ends up as (the outbox writes exactly that) and, for an API
    provider, its own request; header values are checked first, to name the header and the character."""
    headers = {"Subject": message.subject, "To": message.to_name, **message.headers}
    for name, value in headers.items():
        if problem := text_problem(value, single_line=True):
            return f"has a {name} header that cannot be sent: {problem}"
    try:
        build_mime(message, from_email=settings.from_email, from_name=settings.from_name, date=utcnow()).as_bytes()
        if (build_request := getattr(provider, "build_request", None)) is not None:
            build_request([message], campaign).content()
    except BUILD_ERRORS as exc:
        return f"cannot be built for {provider.name}: {exc}"
    return None


def sendable(rendered: RenderedIssue) -> RenderedIssue:
    """The issue as providers are handed it: the subject, which no template renders, made inert to their merge
    tags as the body's content is (Mailgun and SendGrid fill the subject in per reader too)."""
    return dataclasses.replace(rendered, body=dataclasses.replace(rendered.body, subject=inert(rendered.body.subject)))


def compliance_headers(settings: Settings, unsubscribe_url: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 / RFC 2919 headers every newsletter message carries, in printable ASCII, as SES
    requires of every header: FROM_NAME is quoted or RFC 2047-encoded as in From (a comma or an é sent as is
    made List-Id invalid, and SES refused every message)."""
    links = [f"<{unsubscribe_url}>"]
    if settings.unsubscribe_mailto:  # only a mailbox that is read: a mail client may unsubscribe through it alone
        token = unsubscribe_url.rsplit("/", 1)[-1]
        mailbox = quote(settings.unsubscribe_mailto, safe="@!$'()*+,;:")  # RFC 6068: %, ?, &, = … are escaped
        links.append(f"<mailto:{mailbox}?subject=unsubscribe-{token}>")
    return {
        "List-Unsubscribe": ", ".join(links),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": _list_id(settings.from_name, settings.list_id),
    }


@lru_cache(maxsize=8)
def _list_id(from_name: str, list_id: str) -> str:
    # The same for every reader of a send: encoded once, not once per message (1.4-3.8 µs each).
    return formataddr((from_name, list_id))


def campaign_key(issue: Issue) -> str:
    return f"{issue.id}-{issue.week}"


def build_message(
    rendered: RenderedIssue,
    recipient: Recipient,
    settings: Settings,
    *,
    delivery_id: int | None,
    campaign: str,
    subject_prefix: str = "",
) -> OutgoingMessage:
    values = personal_values(settings, rendered, recipient)
    domain = settings.from_email.rpartition("@")[2]
    ref = delivery_id if delivery_id is not None else f"test-{secrets.token_hex(6)}"
    headers = compliance_headers(settings, values["unsubscribe_url"])
    if delivery_id is not None:
        headers["X-Verdicts-Delivery"] = str(delivery_id)
    return OutgoingMessage(
        to_email=recipient.email,
        to_name=recipient.name,
        message_id=f"<{campaign}.{ref}@{domain}>",
        delivery_id=delivery_id,
        body=rendered.body,
        values=values,
        headers=headers,
        subject_prefix=subject_prefix,
    )


def check_readers(claims: list[Claim], issue_id: int) -> None:
    """The only per-reader data in a message's headers (the preflight built the rest): an address or a name
    that cannot go into the To header stops the send before this batch is handed over."""
    for claim in claims:
        for value in (claim.email, claim.name or ""):
            if SINGLE_LINE_REFUSED.search(value):
                raise UnbuildableMessage(
                    f"issue {issue_id}: the message for {claim.email!r} cannot be sent: its To header "
                    f"{text_problem(value, single_line=True)}; fix the reader (`verdicts subscribers`)"
                )
