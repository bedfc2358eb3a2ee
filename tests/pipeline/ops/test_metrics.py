"""The collector's counts stay exact while a scrape reads only what can still change: rows above a settled
id in the append-only tables, and the deliveries of issues whose send is not over."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from sqlmodel import select, update

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.ops import metrics
from pipeline.store.db import session_scope
from pipeline.store.models import Delivery, DeliveryEvent, DeliveryStatus, Issue, IssueStatus, utcnow
from tests.conftest import seed_issue


def _events(session, *rows: tuple[int, str]) -> None:
    session.execute(
        sa.insert(DeliveryEvent.__table__),
        [
            {"id": i, "provider": "postmark", "event_id": f"e{i}", "kind": kind, "received_at": utcnow(), "detail": ""}
            for i, kind in rows
        ],
    )
    session.commit()


def test_webhook_events_are_counted_once_and_a_late_commit_below_the_highest_id_is_not_lost(session, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    tally = metrics.AppendOnlyTally(DeliveryEvent.id, DeliveryEvent.kind)
    # Ids 1-10 but 7: the transaction that took 7 has not committed yet.
    _events(session, *[(i, "delivered" if i % 3 else "bounced") for i in range(1, 11) if i != 7])
    assert tally.counts(session) == Counter({("delivered",): 6, ("bounced",): 3})
    clock[0] += 5
    _events(session, (7, "delivered"))  # it commits now, below the highest id the last scrape saw
    assert tally.counts(session) == Counter({("delivered",): 7, ("bounced",): 3})
    clock[0] += metrics.SETTLE_SECONDS
    _events(session, (11, "complained"))
    assert tally.counts(session) == Counter({("delivered",): 7, ("bounced",): 3, ("complained",): 1})
    assert tally.kept_upto == 10  # what a scrape a minute ago saw is final: later scrapes read only above it
    # Never done to these rows; here it shows what a scrape reads again: nothing below the settled id.
    session.exec(update(DeliveryEvent).where(DeliveryEvent.id <= 10).values(kind="changed"))
    session.commit()
    clock[0] += 1
    assert tally.counts(session) == Counter({("delivered",): 7, ("bounced",): 3, ("complained",): 1})


def test_an_issue_whose_send_is_over_is_counted_once_one_with_unknown_outcomes_each_time(session, settings, workdir):
    issue = seed_issue(session, workdir, readers=4)
    send_issue(settings, issue.id, OutboxProvider(settings))
    tally = metrics.MessageTally()
    assert tally.counts(session) == Counter({("outbox", "sent"): 4})
    assert issue.id in tally.settled

    # A second issue whose send left two outcomes unknown: a webhook may still settle them, so it is read again.
    with session_scope(settings.database_url) as other:
        second = Issue(week="2026-W49", status=IssueStatus.sent, subject="s", cutoff=utcnow())
        other.add(second)
        other.flush()
        other.execute(
            sa.insert(Delivery.__table__),
            [
                {
                    "issue_id": second.id,
                    "email": f"r{i}@example.com",
                    "status": s.value,
                    "attempts": 1,
                    "provider": "postmark",
                }
                for i, s in enumerate([DeliveryStatus.sent, DeliveryStatus.unknown, DeliveryStatus.unknown])
            ],
        )
    expected = Counter({("outbox", "sent"): 4, ("postmark", "sent"): 1, ("postmark", "unknown"): 2})
    assert tally.counts(session) == expected
    session.exec(update(Delivery).where(Delivery.status == DeliveryStatus.unknown).values(status=DeliveryStatus.sent))
    session.commit()  # as a "delivered" webhook does
    assert tally.counts(session) == Counter({("outbox", "sent"): 4, ("postmark", "sent"): 3})
    assert set(tally.settled) == {issue.id, second.id}

    session.delete(session.exec(select(Issue).where(Issue.id == second.id)).one())
    session.commit()
    assert tally.counts(session) == Counter({("outbox", "sent"): 4}) and set(tally.settled) == {issue.id}
