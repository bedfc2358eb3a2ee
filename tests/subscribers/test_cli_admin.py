"""The admin side of consent: show the trail, suppress, purge unconfirmed sign-ups."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import select

from pipeline.store.db import get_engine
from pipeline.store.models import utcnow
from subscribers.consent import Evidence
from subscribers.lookup import get_by_email
from subscribers.models import ConsentRecord, Subscriber
from subscribers.privacy import purge_pending
from subscribers.service import add_subscriber, sign_up


def test_show_gives_status_and_consent_trail(verdicts, settings):
    verdicts("subscribers", "add", "ada@example.com", "--name", "Ada", "--confirmed")
    verdicts("subscribers", "remove", "ada@example.com")
    shown = verdicts("subscribers", "show", "ada@example.com")
    assert shown.code == 0 and f"unsubscribed (suppressed: they unsubscribed, {utcnow():%Y-%m-%d})" in shown.out
    for event in ("signup", "confirm", "withdraw"):
        assert event in shown.out
    assert "admin" in shown.out


def test_suppress_blocks_an_address_before_it_ever_signs_up(verdicts, session, settings):
    assert verdicts("subscribers", "suppress", "Spam.Trap@Example.com", "--reason", "complaint").code == 0
    result = verdicts("subscribers", "add", "spam.trap@example.com", "--confirmed")
    assert result.code == 1 and "is on the suppression list (they marked a newsletter as spam" in result.err
    shown = verdicts("subscribers", "show", "Spam.Trap@example.com")
    assert (
        shown.code == 0
        and "is not a reader. It is on the suppression list (they marked a newsletter as spam" in shown.out
    )
    unknown = verdicts("subscribers", "show", "nobody@example.com")
    assert unknown.code == 4 and "not on the suppression list" in unknown.err
    assert verdicts("subscribers", "suppress", "x@example.com", "--reason", "whim").code == 4


def test_adding_a_reader_who_left_is_an_error_even_without_a_suppression_row(verdicts, session, settings):
    verdicts("subscribers", "add", "gone@example.com", "--confirmed")
    verdicts("subscribers", "remove", "gone@example.com")
    with get_engine(settings.database_url).begin() as conn:  # a suppression lost (restored from an old backup)
        conn.execute(sa.text("DELETE FROM suppression"))
    again = verdicts("subscribers", "add", "gone@example.com", "--confirmed")
    assert again.code == 1 and "gone@example.com unsubscribed: only they can opt in again" in again.err


def test_purge_removes_stale_pending_signups_only(session, settings):
    old = sign_up(session, "old@example.com", None, Evidence(source="form", ip="192.0.2.1")).subscriber
    old.created_at = utcnow() - timedelta(days=8)
    sign_up(session, "fresh@example.com", None, Evidence(source="form"))
    add_subscriber(session, "kept@example.com", confirmed=True)
    session.commit()
    assert purge_pending(session, 7) == 1
    session.commit()
    assert sorted(s.email for s in session.exec(select(Subscriber)).all()) == ["fresh@example.com", "kept@example.com"]
    orphan = [c for c in session.exec(select(ConsentRecord)).all() if c.subscriber_id is None]
    assert orphan and all(c.email is None and c.ip is None for c in orphan)
    assert get_by_email(session, "kept@example.com")


def test_purge_takes_a_wave_of_bot_signups_larger_than_one_statement_can_list(verdicts, session, settings):
    """More stale sign-ups than PostgreSQL takes bound values (65,535) in one statement."""
    wave = 66_000
    old = utcnow() - timedelta(days=30)
    session.execute(
        sa.insert(Subscriber.__table__),
        [
            {"email": f"bot{i}@example.com", "name": "", "status": "pending", "source": "form", "created_at": old}
            for i in range(wave)
        ],
    )
    add_subscriber(session, "kept@example.com", confirmed=True)
    session.commit()
    result = verdicts("subscribers", "purge")
    assert result.code == 0 and f"Purged {wave} unconfirmed sign-up(s)" in result.out
    assert session.exec(select(Subscriber.email)).all() == ["kept@example.com"]
