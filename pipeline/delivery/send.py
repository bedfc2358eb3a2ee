"""The campaign loop: freeze the audience, then claim a batch, personalise, hand it to the
provider, record the outcome, repeat — until every delivery row has an outcome. The ledger
steps live in `pipeline.delivery.ledger`, who carries each batch and when in `pipeline.delivery.carrier`;
this module decides what happens next.

Every step is its own short transaction, so a crash at any moment leaves each row
either pending (sent later), sent (never again), or claimed by a sender that died,
which the next run resolves: re-sent where the provider makes that safe, otherwise
reported as an unknown outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, delete, func, select, update

from pipeline.config import Settings
from pipeline.content.issues import delivery_counts, get_issue, issue_comparisons
from pipeline.content.lineups import LineUp
from pipeline.delivery.carrier import Carrier, Pacer, check_trouble, hand_over
from pipeline.delivery.ledger import (
    Claim,
    IssueChanged,
    audience,
    claim_batch,
    new_worker_id,
    pause,
    record_outcomes,
    recover_stale_claims,
    release,
    start_sending,
    suppress,
)
from pipeline.delivery.messages import (
    UnbuildableMessage,
    build_message,
    campaign_key,
    check_batch,
    check_copies,
    check_readers,
    sendable,
)
from pipeline.delivery.oneoff import send_checked
from pipeline.delivery.providers import (
    Outcome,
    OutgoingMessage,
    Provider,
    ProviderUnavailable,
    SendOutcome,
)
from pipeline.delivery.stop import STOP
from pipeline.delivery.summary import SendSummary
from pipeline.email.editions import Editions
from pipeline.email.render import Recipient, RenderedIssue, render_issue
from pipeline.errors import InvalidState, RenderError
from pipeline.heap import steady_for_a_send
from pipeline.store.db import get_engine, retrying
from pipeline.store.models import Delivery, DeliveryStatus, Issue, IssueStatus, saved_id, utcnow
from pipeline.store.site_events import issue_sent

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")


class SendPaused(ProviderUnavailable):
    """The provider (and the fallback) stayed unavailable longer than FAILOVER_AFTER_SECONDS:
    the issue is paused, the rest of its deliveries wait for `verdicts issue send`."""


def send_test_copies(
    session: Session, issue: Issue, settings: Settings, addresses: list[str]
) -> list[tuple[str, SendOutcome]]:
    """``[TEST]`` copies through the configured provider, for the CLI and the editor alike:
    no delivery row, so never counted; links act for nobody (subscriber 0). A copy the provider
    cannot be handed stops them all, saying why (UnbuildableMessage), before any is sent."""
    rendered = sendable(render_issue(session, issue, settings))
    campaign = campaign_key(issue)
    messages = [
        build_message(
            rendered, Recipient(0, a, "Editor"), settings, delivery_id=None, campaign=campaign, subject_prefix="[TEST] "
        )
        for a in addresses
    ]
    outcomes = send_checked(settings, messages, campaign, f"the test copy of issue {issue.id}")
    return list(zip(addresses, outcomes, strict=True))


def sent_before(session: Session, issue: Issue, summary: SendSummary) -> bool:
    """An issue an earlier run sent: the summary says so, and nothing is sent."""
    if issue.status is not IssueStatus.sent:
        return False
    summary.audience = audience(session, summary.issue_id)
    summary.finished = summary.already_sent = True
    return True


def rendered_and_started(
    session: Session,
    issue: Issue,
    settings: Settings,
    provider: Provider | None = None,
    *,
    check: bool = True,
    actor: str | None = None,
) -> tuple[Editions, int]:
    """Render, lint and (``check``) build every copy of every line-up for ``provider`` before the status moves
    (a refused issue stays approved, nothing frozen), then start the send of exactly what was rendered. An editor
    who unapproved, edited and approved again in between gets the new words sent, rendered again; the audience
    comes back with them. Line-ups rendered later (a parallel worker's) are of the same words: a sending issue
    cannot be edited."""
    while True:
        revision = issue.revision
        rendered = sendable(render_issue(session, issue, settings))
        if rendered.lint.errors:
            raise RenderError(f"issue {issue.id} fails lint: " + "; ".join(rendered.lint.errors))
        editions = Editions(issue_comparisons(session, issue), _renderer(session, issue, settings), rendered)
        if check:
            check_copies(session, editions, settings, provider)
        try:
            return editions, start_sending(session, issue, revision, actor=actor)
        except IssueChanged:
            log.info(
                "issue %s was changed after it was rendered for this send: rendering it again",
                issue.id,
                extra={"issue_id": issue.id},
            )


def _renderer(session: Session, issue: Issue, settings: Settings) -> Callable[[LineUp], RenderedIssue]:
    return lambda lineup: sendable(render_issue(session, issue, settings, lineup=lineup))


def send_issue(
    settings: Settings,
    issue_id: int,
    provider: Provider,
    on_progress: ProgressFn | None = None,
    fallback: Provider | None = None,
    *,
    checked: bool = False,
    actor: str | None = None,
) -> SendSummary:
    """Send (or resume sending) one issue to its frozen audience; safe to run again at any time. ``actor``: who
    starts or resumes it, for the audit trail (``pipeline.store.audit``).

    One batch is with the provider while the next is claimed and personalised: the database
    and our own CPU work overlap the provider's answer. At most one batch per sender is ever
    with the provider, so a crash leaves at most that batch with an unknown outcome.
    """
    started = time.monotonic()
    summary = SendSummary(issue_id, primary=provider.name)
    worker = new_worker_id()
    carrier = Carrier(provider, fallback, settings.failover_after_seconds)
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        issue = get_issue(session, issue_id)
        if sent_before(session, issue, summary):
            return summary
        # Parallel workers: the parent checked every copy once.
        editions, summary.audience = rendered_and_started(
            session, issue, settings, provider, check=not checked, actor=actor
        )
        summary.requeued, summary.resent_unknown = recover_stale_claims(session, issue_id, settings, provider)
        loop = _Loop(session, settings, editions, campaign_key(issue), worker, summary)
        try:
            with steady_for_a_send(), ThreadPoolExecutor(1, thread_name_prefix="courier") as courier:
                loop.run(carrier, courier, on_progress)
        except ProviderUnavailable as exc:
            retrying(session, settings.db_retry_seconds, _finish, issue, summary)
            if summary.remaining and retrying(session, settings.db_retry_seconds, pause, issue, str(exc)):
                log.warning("issue %s paused: %s", issue.id, exc, extra={"issue_id": issue.id})
            raise SendPaused(
                f"{exc}: issue {issue.id} is paused with {summary.remaining} messages waiting; "
                f"`verdicts issue send {issue.id}` resumes it"
            ) from None
        except UnbuildableMessage as exc:
            raise UnbuildableMessage(
                f"{exc}; {retrying(session, settings.db_retry_seconds, _stopped, issue, str(exc))}"
            ) from None
        retrying(session, settings.db_retry_seconds, _finish, issue, summary)
    summary.seconds = time.monotonic() - started
    log.info(
        summary.line(),
        extra={
            "issue_id": issue_id,
            "worker": worker,
            "sent": summary.sent,
            "failed": summary.failed,
            "unknown": summary.unknown,
            "remaining": summary.remaining,
            "finished": summary.finished,
        },
    )
    return summary


def _stopped(session: Session, issue: Issue, reason: str) -> str:
    """A send stopped by a message it could not build, left so it can be fixed: back to approved, its audience
    unfrozen, when no message has left yet (it can be unapproved and edited); else paused, to resume once fixed.
    Says which."""
    session.rollback()
    issue_id = saved_id(issue)
    left = select(col(Delivery.id)).where(
        col(Delivery.issue_id) == issue_id, col(Delivery.status) != DeliveryStatus.pending
    )
    back = session.exec(
        update(Issue)
        .where(col(Issue.id) == issue_id, col(Issue.status) == IssueStatus.sending, ~sa.exists(left))
        .values(status=IssueStatus.approved, send_started_at=None)
    ).rowcount
    if back:
        session.exec(delete(Delivery).where(col(Delivery.issue_id) == issue_id))
        session.commit()
        return f"issue {issue.id} is approved again and nothing was sent"
    session.commit()
    pause(session, issue, reason)
    return (
        f"issue {issue.id} is paused (part of it was sent): fix the reader's data, then "
        f"`verdicts issue send {issue.id}` resumes it"
    )


@dataclass
class _Batch:
    """Claimed rows that will be sent, and their messages."""

    claims: list[Claim]
    messages: list[OutgoingMessage]
    suppressed: int

    @property
    def ids(self) -> list[int]:
        return [c.delivery_id for c in self.claims]


@dataclass
class _Flight:
    batch: _Batch
    provider: Provider
    outcomes: Future[list[SendOutcome]]


class _Loop:
    """claim → personalise → (previous batch answered: record it) → hand to the provider → repeat."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        editions: Editions,
        campaign: str,
        worker: str,
        summary: SendSummary,
    ) -> None:
        self.session, self.settings, self.editions, self.campaign, self.worker, self.summary = (
            session,
            settings,
            editions,
            campaign,
            worker,
            summary,
        )
        self.rendered = editions.issue
        self.done = session.exec(
            select(func.count()).where(
                col(Delivery.issue_id) == self.rendered.issue_id,
                col(Delivery.status).not_in([DeliveryStatus.pending, DeliveryStatus.sending]),
            )
        ).one()

    def run(self, carrier: Carrier, courier: ThreadPoolExecutor, on_progress: ProgressFn | None) -> None:
        pacer = Pacer(self.settings.rate_per_second)
        flight: _Flight | None = None
        ready: _Batch | None = None
        try:
            while True:
                size = min(self.settings.batch_size or carrier.current.max_batch, carrier.current.max_batch)
                ready = None if STOP.is_set() else self.prepare(size, carrier.current)
                if flight is not None:
                    trouble = self.settle(flight)
                    flight = None
                    if on_progress:
                        on_progress(self.done, self.summary.audience)
                    check_trouble(carrier, trouble)
                if ready is None:
                    return
                if STOP.is_set():  # SIGTERM while the last batch was out: this one never leaves
                    release(self.session, ready.ids, resend_safe=True)
                    return
                pacer.wait(len(ready.messages))
                provider = carrier.current
                flight = _Flight(ready, provider, courier.submit(hand_over, provider, ready.messages, self.campaign))
                ready = None
        except BaseException:
            if ready is not None:  # built, never handed over
                release(self.session, ready.ids, resend_safe=True)
            if (
                flight is not None
            ):  # handed over, the answer not recorded: only an idempotent provider may send it again
                release(self.session, flight.batch.ids, resend_safe=flight.provider.idempotent)
            raise

    def db(self, step: Callable[..., T], *args: object) -> T:
        """One ledger step, waiting out a database restart or lock (DB_RETRY_SECONDS)."""
        return retrying(self.session, self.settings.db_retry_seconds, step, *args)

    def prepare(self, size: int, provider: Provider) -> _Batch | None:
        claims = self.db(claim_batch, self.rendered.issue_id, self.worker, size, utcnow())
        if not claims:
            return None
        # Checked at the claim, right before the batch leaves: a reader who left since the freeze gets nothing.
        gone = [c.delivery_id for c in claims if not c.receives]
        if gone:
            self.db(suppress, gone)
            self.summary.suppressed += len(gone)
            claims = [c for c in claims if c.receives]
        try:
            check_readers(claims, self.rendered.issue_id)
            # One line-up after another: a provider that merges on its side sends one body per request.
            groups: dict[LineUp, list[Claim]] = {}
            for c in claims:
                groups.setdefault(self.editions.lineups.of_stored(c.interests, c.only_interests), []).append(c)
            ordered: list[Claim] = []
            messages: list[OutgoingMessage] = []
            for lineup, group in groups.items():
                rendered = self.edition(lineup, group, provider)
                ordered += group
                messages += [
                    build_message(
                        rendered,
                        _recipient(c),
                        self.settings,
                        delivery_id=c.delivery_id,
                        campaign=self.campaign,
                    )
                    for c in group
                ]
        except BaseException:
            release(self.session, [c.delivery_id for c in claims], resend_safe=True)
            raise
        return _Batch(ordered, messages, len(gone))

    def edition(self, lineup: LineUp, group: list[Claim], provider: Provider) -> RenderedIssue:
        """The line-up's rendered body; one the preflight did not meet is checked on its first readers."""
        rendered = self.editions.get(lineup)
        if lineup not in self.editions.checked:
            check_batch(rendered, [_recipient(c) for c in group], self.settings, provider, self.campaign)
            self.editions.checked.add(lineup)
        return rendered

    def settle(self, flight: _Flight) -> SendOutcome | None:
        """Record a batch's outcomes; returns the first sign of a failing provider: a deferral (it
        could not take some), else an unknown outcome (it stopped answering)."""
        outcomes = flight.outcomes.result()
        counts = self.db(record_outcomes, flight.batch.claims, outcomes, flight.provider.name, self.worker)
        summary = self.summary
        summary.sent += counts[Outcome.sent]
        summary.failed += counts[Outcome.failed]
        if counts[Outcome.sent]:
            summary.carried[flight.provider.name] = summary.carried.get(flight.provider.name, 0) + counts[Outcome.sent]
        self.done += flight.batch.suppressed + len(flight.batch.claims) - counts[Outcome.deferred]
        if log.isEnabledFor(logging.DEBUG):
            ids = {
                "issue_id": self.rendered.issue_id,
                "worker": self.worker,
                "delivery_ids": flight.batch.ids,
                "provider": flight.provider.name,
            }
            log.debug(
                "issue %s: a batch of %d through %s: %d sent, %d failed, %d deferred",
                self.rendered.issue_id,
                len(outcomes),
                flight.provider.name,
                counts[Outcome.sent],
                counts[Outcome.failed],
                counts[Outcome.deferred],
                extra=ids,
            )
        return next((o for o in outcomes if o.state is Outcome.deferred), None) or next(
            (o for o in outcomes if o.state is Outcome.unknown), None
        )


def _recipient(claim: Claim) -> Recipient:
    """A claim that ``receives`` found its reader's row (the claim's outer join): the id and name are set."""
    if claim.subscriber_id is None or claim.name is None:
        raise InvalidState(f"delivery {claim.delivery_id} has no reader to send to")
    return Recipient(claim.subscriber_id, claim.email, claim.name)


def _finish(session: Session, issue: Issue, summary: SendSummary) -> None:
    counts = delivery_counts(session, summary.issue_id)
    summary.remaining = counts["pending"] + counts["sending"]
    summary.elsewhere = counts["sending"]  # this sender's own claims are all settled by now
    # Unknown outcomes stay in the report of every run until someone checks them.
    summary.unknown = counts["unknown"]
    if summary.remaining == 0:
        # Paused too: another sender may have finished it after this one paused.
        if session.exec(
            update(Issue)
            .where(col(Issue.id) == summary.issue_id, col(Issue.status).in_([IssueStatus.sending, IssueStatus.paused]))
            .values(status=IssueStatus.sent, sent_at=utcnow(), paused_reason=None)
        ).rowcount:
            issue_sent(session, summary.issue_id, counts["sent"])  # with the change: one event, never for none
        session.commit()
        summary.finished = True
