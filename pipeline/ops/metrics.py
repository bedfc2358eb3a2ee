"""Prometheus metrics, read from the database when scraped.

Several web processes, the scheduler and `verdicts issue send` processes all write the database; counters
kept in each process's memory would each know a part, and disagree from one scrape to the next depending
on which web worker answered. So every figure is counted in the database at scrape time, one query per
family, by a custom collector: any process answers with the same figures.

Counting a whole table at every scrape would cost more as the site ages (a million deliveries took 0.6-0.9 s
on SQLite, 0.15-0.2 s on PostgreSQL), so what can no longer change is counted once per process: the
messages of an issue whose send is over, and the rows of the append-only tables (webhook events, the
consent trail) up to an id a scrape saw a while ago. A scrape reads what changed since.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any, cast

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, func, select

from pipeline.ops import heartbeat
from pipeline.store.db import get_engine
from pipeline.store.models import Delivery, DeliveryEvent, DeliveryStatus, Issue, IssueStatus, Vote, utcnow
from subscribers.models import ConsentRecord, Subscriber, SubscriberStatus

#: What became of the messages handed to a provider (or that it may have accepted: unknown).
OUTCOMES = (DeliveryStatus.sent, DeliveryStatus.failed, DeliveryStatus.unknown)
QUEUED = (DeliveryStatus.pending, DeliveryStatus.sending)
#: A transaction that took an id this long before has committed or rolled back: rows up to it are final.
SETTLE_SECONDS = 60.0


class AppendOnlyTally:
    """Counts of an append-only table by some of its columns (rows are added, never deleted or changed in
    those columns). Each scrape reads only the rows above the id it has settled on; rows up to the highest
    id a scrape saw SETTLE_SECONDS ago are then kept counted, as no transaction can still add one below it."""

    def __init__(self, id_column: Mapped[int | None], *keys: Mapped[Any]) -> None:
        self.id_column, self.keys = id_column, keys
        self.kept: Counter[tuple[Any, ...]] = Counter()
        self.kept_upto = 0
        self.seen: deque[tuple[float, int]] = deque()  # (when, the highest id a scrape saw)
        self.lock = threading.Lock()

    def counts(self, session: Session) -> Counter[tuple[Any, ...]]:
        with self.lock:
            now, upto = time.monotonic(), self.kept_upto
            while self.seen and now - self.seen[0][0] >= SETTLE_SECONDS:
                upto = max(upto, self.seen.popleft()[1])
            settles = (col(self.id_column) <= upto).label("settles")
            # Core's select: the columns are as many as the keys, more than sqlmodel's typed select takes.
            rows = session.connection().execute(
                sa.select(*self.keys, settles, func.count(), func.max(self.id_column))
                .where(col(self.id_column) > self.kept_upto)
                .group_by(*self.keys, settles)
            )
            fresh: Counter[tuple[Any, ...]] = Counter()
            highest = upto
            for *key, settled, n, top in rows:
                (self.kept if settled else fresh)[tuple(key)] += n
                highest = max(highest, top)
            self.kept_upto = upto
            self.seen.append((now, highest))
            return self.kept + fresh


class MessageTally:
    """Messages by issue, provider and outcome. An issue whose send is over (sent, and no outcome left unknown
    for a webhook to settle) no longer changes: counted once per process, then only the others are read."""

    def __init__(self) -> None:
        self.settled: dict[int, Counter[tuple[str, str]]] = {}
        self.lock = threading.Lock()

    def counts(self, session: Session) -> Counter[tuple[str, str]]:
        # The primary key, so never NULL: typed as the model's (None before a row is saved).
        statuses = cast("dict[int, IssueStatus]", dict(session.exec(select(Issue.id, Issue.status)).all()))
        with self.lock:
            for gone in set(self.settled) - set(statuses):
                del self.settled[gone]
            todo = [i for i in statuses if i not in self.settled]
            live: dict[int, Counter[tuple[str, str]]] = {i: Counter() for i in todo}
            if todo:
                rows = session.exec(
                    select(Delivery.issue_id, Delivery.provider, col(Delivery.status), func.count())
                    .where(col(Delivery.issue_id).in_(todo), col(Delivery.status).in_(OUTCOMES))
                    .group_by(col(Delivery.issue_id), col(Delivery.provider), col(Delivery.status))
                )
                for issue_id, provider, status, n in rows:
                    live[issue_id][(provider or "none", status.value)] += n
            for issue_id, counts in live.items():
                if statuses[issue_id] is IssueStatus.sent and not any(s == "unknown" for _, s in counts):
                    self.settled[issue_id] = counts
            return sum((*self.settled.values(), *(c for i, c in live.items() if i not in self.settled)), Counter())


class DatabaseCollector(Collector):
    """The newsletter's figures, counted in the database at each scrape."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.message_tally = MessageTally()
        self.event_tally = AppendOnlyTally(col(DeliveryEvent.id), col(DeliveryEvent.provider), col(DeliveryEvent.kind))
        self.consent_tally = AppendOnlyTally(col(ConsentRecord.id), col(ConsentRecord.event), col(ConsentRecord.source))

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database; the names come with each scrape

    def collect(self) -> Iterator[Metric]:
        with Session(get_engine(self.database_url)) as session:
            yield self.messages(session)
            yield self.queue(session)
            yield self.webhook_events(session)
            yield self.consent_events(session)
            yield self.subscribers(session)
            yield self.votes(session)
            yield from self.scheduler(session)

    def messages(self, session: Session) -> Metric:
        family = CounterMetricFamily(
            "verdicts_messages",
            "Newsletter messages by provider and outcome (unknown: the provider may have accepted them)",
            labels=["provider", "outcome"],
        )
        for (provider, outcome), n in sorted(self.message_tally.counts(session).items()):
            family.add_metric([provider, outcome], n)
        return family

    def queue(self, session: Session) -> Metric:
        # Read issue by issue from the (issue, status) index, not row by row from every issue ever sent.
        query = (
            select(Delivery.status, func.count())
            .group_by(Delivery.status)
            .where(col(Delivery.issue_id).in_(select(Issue.id)), col(Delivery.status).in_(QUEUED))
        )
        counts = _counted(session.exec(query), QUEUED)
        family = GaugeMetricFamily(
            "verdicts_delivery_queue",
            "Deliveries waiting to be sent (pending), or with a sender now (sending)",
            labels=["status"],
        )
        for status, n in counts.items():
            family.add_metric([status], n)
        return family

    def webhook_events(self, session: Session) -> Metric:
        family = CounterMetricFamily(
            "verdicts_webhook_events", "Provider reports received by webhook, by kind", labels=["provider", "kind"]
        )
        for (provider, kind), n in sorted(self.event_tally.counts(session).items()):
            family.add_metric([provider, kind], n)
        return family

    def consent_events(self, session: Session) -> Metric:
        family = CounterMetricFamily(
            "verdicts_consent_events",
            "The consent trail: signup, confirm, withdraw (unsubscribes), resubscribe, erase; by where it happened",
            labels=["event", "source"],
        )
        for (event, source), n in sorted(self.consent_tally.counts(session).items(), key=str):
            family.add_metric([str(event), source], n)
        return family

    def subscribers(self, session: Session) -> Metric:
        rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status))
        counts = _counted(rows, SubscriberStatus)
        family = GaugeMetricFamily(
            "verdicts_subscribers", "Subscribers by status (confirmed ones receive issues)", labels=["status"]
        )
        for status, n in counts.items():
            family.add_metric([status], n)
        return family

    def votes(self, session: Session) -> Metric:
        counts = _counted(session.exec(select(Vote.verdict, func.count()).group_by(Vote.verdict)), ("ship", "skip"))
        family = GaugeMetricFamily(
            "verdicts_votes", "Readers' current Ship/Skip votes (a reader may change theirs)", labels=["verdict"]
        )
        for verdict, n in counts.items():
            family.add_metric([verdict], n)
        return family

    def scheduler(self, session: Session) -> Iterator[Metric]:
        """Nothing where no scheduler ever ran: an alert on the age then fires only where one is expected."""
        state = heartbeat.state(session, utcnow())
        if state.record is None:
            return
        yield GaugeMetricFamily(
            "verdicts_scheduler_heartbeat_age_seconds",
            f"Seconds since the scheduler last beat (every {heartbeat.BEAT_SECONDS} s while it runs)",
            value=state.age,
        )
        run = state.record
        if run.last_run_at is not None and run.last_run_outcome is not None:
            family = GaugeMetricFamily(
                "verdicts_scheduler_last_run_timestamp_seconds",
                "When the scheduler's last run started, with its job and outcome",
                labels=["job", "outcome"],
            )
            family.add_metric([run.last_run_job or "", run.last_run_outcome.value], run.last_run_at.timestamp())
            yield family


def _counted(rows: Iterable[tuple[str, int]], keys: Iterable[str]) -> dict[str, int]:
    """Counts by key, every expected key present (0 when no row has it): a series that is there from the start.
    The statuses are StrEnums, whose str() is their value."""
    counts = {str(k): 0 for k in keys}
    for key, n in rows:
        counts[str(key)] = n
    return counts


def registry(database_url: str) -> CollectorRegistry:
    """A registry of our figures alone: a web worker's own process metrics would describe one process of several."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector(database_url))
    return reg
