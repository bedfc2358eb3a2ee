"""The welcome email's ledger: queued with the confirmation, once per reader, and exactly once on the wire
through a crash (re-sent only where the provider dedupes, else unknown), a reader who left, the sweep, the
CLI and the scheduler; bounces of a welcome still suppress the address."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlmodel import select

from pipeline.delivery.events import record_events
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.providers.base import EventKind, ProviderEvent
from pipeline.delivery.welcome import CAMPAIGN, send_pending_welcomes
from pipeline.email.welcome import schedule_words
from pipeline.store.db import session_scope
from pipeline.store.models import DeliveryStatus, IssueStatus, Welcome, utcnow
from subscribers import privacy, service
from subscribers.addresses import email_hash
from subscribers.consent import Evidence
from subscribers.models import Subscriber, SubscriberStatus, Suppression
from tests.conftest import outbox_messages, seed_issue


class NotDeduping(OutboxProvider):
    """A provider that may deliver a retried request twice (Postmark, SES …): the outbox, told so."""

    idempotent = False


class Crashing(OutboxProvider):
    """The process dies (SIGINT) while the provider has the message."""

    def send_batch(self, messages, *, campaign):
        raise KeyboardInterrupt


def _confirmed(settings, email: str = "ola@example.com", name: str = "Ola") -> int:
    """A reader who signed up on the form and pressed Confirm: their welcome is queued, not sent."""
    with session_scope(settings.database_url) as session:
        result = service.sign_up(session, email, name, Evidence(source="form"))
        row, changed = service.confirm(session, result.subscriber.id, Evidence(source="email"))
        assert changed
        return row.id


def _welcomes(settings) -> list[Welcome]:
    with session_scope(settings.database_url) as session:
        return list(session.exec(select(Welcome).order_by(Welcome.id)))


def _claimed_by_a_dead_sender(settings) -> None:
    """The state a sender leaves when it dies between its claim and the provider's answer."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with session_scope(settings.database_url) as session:
        for row in session.exec(select(Welcome)):
            row.status, row.claimed_by, row.claimed_at = (
                DeliveryStatus.sending,
                f"{socket.gethostname()}:{dead.pid}:dead",
                utcnow() - timedelta(seconds=5),
            )
            session.add(row)


def test_the_confirmation_queues_one_welcome_and_the_sweep_sends_it_once(settings):
    sid = _confirmed(settings)
    [row] = _welcomes(settings)
    assert (row.subscriber_id, row.email, row.status) == (sid, "ola@example.com", DeliveryStatus.pending)
    first = send_pending_welcomes(settings)
    assert (first.sent, first.waiting) == (1, 0)
    assert not send_pending_welcomes(settings).anything
    [mail] = outbox_messages(settings, CAMPAIGN)
    assert mail["To"] == "Ola <ola@example.com>" and mail["Message-ID"].startswith(f"<{CAMPAIGN}.w{row.id}@")


def test_readers_added_as_confirmed_by_the_cli_or_an_import_get_no_welcome(settings):
    with session_scope(settings.database_url) as session:
        service.add_subscriber(session, "imported@example.com", "Imp", confirmed=True, source="csv")
    assert _welcomes(settings) == []


def test_after_a_crash_between_claim_and_send_a_deduping_provider_gets_it_again_once(settings):
    _confirmed(settings)
    _claimed_by_a_dead_sender(settings)
    summary = send_pending_welcomes(settings, OutboxProvider(settings))
    assert (summary.requeued, summary.sent) == (1, 1)
    assert len(outbox_messages(settings, CAMPAIGN)) == 1
    assert [(r.status, r.attempts) for r in _welcomes(settings)] == [(DeliveryStatus.sent, 1)]


def test_after_a_crash_a_provider_that_may_deliver_twice_leaves_it_unknown_never_sent_again(settings):
    _confirmed(settings)
    _claimed_by_a_dead_sender(settings)
    summary = send_pending_welcomes(settings, NotDeduping(settings))
    assert (summary.requeued, summary.sent) == (0, 0)
    assert outbox_messages(settings, CAMPAIGN) == []
    [row] = _welcomes(settings)
    assert row.status is DeliveryStatus.unknown and "outcome is unknown" in row.error


@pytest.mark.parametrize(("provider", "after"), [(Crashing, DeliveryStatus.pending), (None, DeliveryStatus.unknown)])
def test_a_send_stopped_while_the_provider_had_the_welcome(settings, provider, after):
    _confirmed(settings)

    class Stopping(NotDeduping):
        send_batch = Crashing.send_batch

    with pytest.raises(KeyboardInterrupt):
        send_pending_welcomes(settings, (provider or Stopping)(settings))
    assert [r.status for r in _welcomes(settings)] == [after]


def test_a_claim_another_sender_holds_is_left_alone(settings):
    _confirmed(settings)
    with session_scope(settings.database_url) as session:
        row = session.exec(select(Welcome)).one()
        row.status, row.claimed_by, row.claimed_at = DeliveryStatus.sending, "elsewhere:1:live", utcnow()
        session.add(row)
    assert not send_pending_welcomes(settings).anything
    assert outbox_messages(settings, CAMPAIGN) == []


def test_a_reader_who_left_before_the_sweep_gets_nothing(settings):
    sid = _confirmed(settings)
    with session_scope(settings.database_url) as session:
        service.unsubscribe(session, session.get(Subscriber, sid), trigger="page")
    summary = send_pending_welcomes(settings)
    assert (summary.sent, summary.suppressed) == (0, 1)
    assert outbox_messages(settings, CAMPAIGN) == []
    assert [r.status for r in _welcomes(settings)] == [DeliveryStatus.suppressed]


def test_erasing_the_reader_unlinks_their_welcome(settings):
    sid = _confirmed(settings)
    send_pending_welcomes(settings)
    with session_scope(settings.database_url) as session:
        privacy.erase(session, session.get(Subscriber, sid), Evidence(source="admin"))
    [row] = _welcomes(settings)
    assert (row.subscriber_id, row.email, row.status) == (None, "", DeliveryStatus.sent)


def test_a_bounce_of_a_welcome_that_names_only_the_message_suppresses_the_address(settings):
    _confirmed(settings)
    send_pending_welcomes(settings)
    [row] = _welcomes(settings)
    event = ProviderEvent("ev-1", EventKind.bounced, None, provider_message_id=row.provider_message_id)
    with session_scope(settings.database_url) as session:
        assert record_events(session, "postmark", [event], settings) == 1
    with session_scope(settings.database_url) as session:
        reader = session.exec(select(Subscriber).where(Subscriber.email == "ola@example.com")).one()
        assert reader.status is SubscriberStatus.unsubscribed
        assert session.get(Suppression, email_hash("ola@example.com")).reason == "bounce"


def test_a_welcome_that_fails_lint_is_not_sent_and_stays_waiting(settings, monkeypatch):
    _confirmed(settings)
    monkeypatch.setattr(settings, "postal_address", "")
    with pytest.raises(Exception, match="welcome email fails lint: no postal address"):
        send_pending_welcomes(settings)
    assert [r.status for r in _welcomes(settings)] == [DeliveryStatus.pending]


def test_the_cli_sends_what_is_waiting_and_says_how_many(settings, verdicts):
    _confirmed(settings)
    _confirmed(settings, "bo@example.com", "Bo")
    done = verdicts("subscribers", "welcome")
    assert done.code == 0 and "Welcome emails: 2 sent, 0 failed, 0 unknown" in done.out
    again = verdicts("subscribers", "welcome")
    assert again.code == 0 and "No welcome email is waiting." in again.out
    assert sorted(m["To"] for m in outbox_messages(settings, CAMPAIGN)) == [
        "Bo <bo@example.com>",
        "Ola <ola@example.com>",
    ]


def test_the_schedulers_regular_pass_sends_waiting_welcomes(settings):
    from pipeline.ops.schedule import approved_job

    _confirmed(settings)
    assert approved_job(settings, set()) is None  # no issue to send: the pass itself reports nothing
    assert len(outbox_messages(settings, CAMPAIGN)) == 1


def test_the_welcome_links_the_latest_sent_issue_and_says_the_schedule_in_words(settings, workdir):
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=0)
        issue.status, issue.sent_at = IssueStatus.sent, utcnow()
        session.add(issue)
        week, subject = issue.week, issue.subject
    _confirmed(settings)
    send_pending_welcomes(settings)
    [mail] = outbox_messages(settings, CAMPAIGN)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert f"{settings.base_url}/issues/{week}" in text and subject in text


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 9 * * mon", "every Monday at 09:00 Europe/Berlin"),
        ("30 7 * * 5", "every Friday at 07:30 Europe/Berlin"),
        ("0 9 * * 0", "every Sunday at 09:00 Europe/Berlin"),
        ("0 9 * * mon,thu", "once a week"),
        ("*/5 * * * *", "once a week"),
        ("0 9 1 * *", "once a week"),
    ],
)
def test_the_schedule_in_words_never_promises_what_the_cron_does_not_say(cron, words):
    assert schedule_words(cron, "Europe/Berlin") == words
