"""The delivery ledger: exactly one copy per confirmed reader, across reruns and crashes."""

from __future__ import annotations

import email
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from email.policy import default

import pytest
from sqlmodel import select

from pipeline.delivery.ledger import STOPPED_IN_FLIGHT, claim_batch, start_sending
from pipeline.delivery.providers import OutboxProvider, Outcome, SendOutcome
from pipeline.delivery.send import send_issue
from pipeline.errors import InvalidState, RenderError
from pipeline.store.models import Delivery, DeliveryStatus, IssueStatus
from subscribers.lookup import get_by_email
from subscribers.service import add_subscriber, unsubscribe
from tests.conftest import seed_issue


def _recipients(settings) -> Counter:
    """Who got a copy, read back from the .eml files."""
    return Counter(
        email.message_from_bytes(p.read_bytes(), policy=default)["To"].addresses[0].addr_spec
        for p in settings.outbox_dir.rglob("0*.eml")
    )


def test_only_confirmed_readers_get_one_copy_and_a_rerun_sends_nothing(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=4)
    add_subscriber(session, "pending@example.com", "P")
    session.commit()
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    assert (summary.sent, summary.finished) == (4, True)
    assert _recipients(settings) == Counter({f"reader{i}@example.com": 1 for i in range(4)})
    session.refresh(issue)
    assert issue.status is IssueStatus.sent and issue.sent_at is not None
    again = send_issue(settings, issue.id, OutboxProvider(settings))
    assert again.sent == 0 and again.finished
    assert again.line() == f"issue {issue.id} was sent before, to its audience of 4: nothing to do"
    assert sum(_recipients(settings).values()) == 4


def test_rows_another_live_sender_holds_are_named_in_the_summary(session, settings, tmp_path):
    """A second `issue send` while the first is still sending: it sends what is left and says
    the rest is with the other sender, so nobody runs it again to no purpose."""
    issue = seed_issue(session, tmp_path, readers=5)
    start_sending(session, issue)
    other = f"{socket.gethostname()}:{os.getpid()}:0ther"  # this live process, another sender's claim
    held = claim_batch(session, issue.id, other, 2)
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    assert (summary.sent, summary.remaining, summary.elsewhere, summary.finished) == (3, 2, 2, False)
    assert summary.line().endswith(f"2 not yet sent (2 claimed by another sender) ({summary.seconds:.1f}s)")
    assert {r.email for r in held}.isdisjoint(_recipients(settings))


def test_a_draft_is_never_sent(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, approved=False)
    with pytest.raises(InvalidState, match="approve it first"):
        send_issue(settings, issue.id, OutboxProvider(settings))
    assert not settings.outbox_dir.exists()


def test_words_an_editor_changes_while_the_send_renders_are_the_words_readers_get(
    session, settings, tmp_path, monkeypatch
):
    """The scheduler renders an approved issue; in that moment an editor unapproves it, fixes the subject
    and approves it again. The send must carry the fixed subject, not the one it had rendered."""
    from pipeline.content import editing
    from pipeline.content.issues import get_issue
    from pipeline.delivery import send
    from pipeline.email import approval
    from pipeline.store.db import session_scope

    issue = seed_issue(session, tmp_path, readers=2)
    rendered_once = send.render_issue

    def render_then_an_editor_steps_in(session_, issue_, settings_, **kwargs):
        rendered = rendered_once(session_, issue_, settings_, **kwargs)
        if issue_.subject != "Corrected subject":
            with session_scope(settings.database_url) as editor:
                editing.unapprove(editor, get_issue(editor, issue.id))
                editing.edit(editor, get_issue(editor, issue.id), subject="Corrected subject")
                approval.approve(editor, get_issue(editor, issue.id), settings)
        return rendered

    monkeypatch.setattr(send, "render_issue", render_then_an_editor_steps_in)
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    assert (summary.sent, summary.finished) == (2, True)
    subjects = {
        email.message_from_bytes(p.read_bytes(), policy=default)["Subject"] for p in settings.outbox_dir.rglob("0*.eml")
    }
    assert subjects == {"Corrected subject"}


def test_reader_who_leaves_after_the_freeze_gets_nothing(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=3)

    class LeaveMidway(OutboxProvider):
        calls = 0

        def send_batch(self, messages, *, campaign):
            if self.calls == 0:  # the reader unsubscribes while batch 1 is out
                leaver = get_by_email(session, "reader2@example.com")
                unsubscribe(session, leaver)
                session.commit()
            self.calls += 1
            return super().send_batch(messages, campaign=campaign)

    settings = settings.model_copy(update={"batch_size": 1})
    summary = send_issue(settings, issue.id, LeaveMidway(settings))
    assert (summary.sent, summary.suppressed) == (2, 1)
    assert "reader2@example.com" not in _recipients(settings)


class CrashAfter(OutboxProvider):
    """Writes the batch, then dies before the sender can record it (the worst moment)."""

    def __init__(self, settings, batches: int):
        super().__init__(settings)
        self.left = batches

    def send_batch(self, messages, *, campaign):
        result = super().send_batch(messages, campaign=campaign)
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt("crash between the provider's answer and the commit")
        return result


def test_interrupted_send_resumes_with_exactly_one_copy_each(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=10)
    settings = settings.model_copy(update={"batch_size": 3})
    with pytest.raises(KeyboardInterrupt):
        send_issue(settings, issue.id, CrashAfter(settings, batches=2))
    assert 0 < sum(_recipients(settings).values()) < 10
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    assert summary.finished
    assert _recipients(settings) == Counter({f"reader{i}@example.com": 1 for i in range(10)})
    rows = session.exec(select(Delivery).where(Delivery.issue_id == issue.id)).all()
    assert {r.status for r in rows} == {DeliveryStatus.sent}


def test_a_provider_that_cannot_dedupe_reports_unknown_outcomes(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=6)
    settings = settings.model_copy(update={"batch_size": 2})

    class NoIdempotency(CrashAfter):
        idempotent = False

    with pytest.raises(KeyboardInterrupt):
        send_issue(settings, issue.id, NoIdempotency(settings, batches=1))
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    counts = Counter(r.status for r in session.exec(select(Delivery)).all())
    assert counts == {DeliveryStatus.sent: 4, DeliveryStatus.unknown: 2}
    unknown = session.exec(select(Delivery).where(Delivery.status == DeliveryStatus.unknown)).all()
    assert {r.error for r in unknown} == {STOPPED_IN_FLIGHT}  # `issue show` says why, not "no reason given"
    assert sum(_recipients(settings).values()) == 6  # the unknown two were delivered once, not twice
    assert summary.finished and summary.unknown == 2
    assert "2 deliveries with unknown outcome" in summary.line()


def test_permanent_refusal_is_recorded_with_its_reason(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=2)

    class Refusing(OutboxProvider):
        def send_batch(self, messages, *, campaign):
            return [SendOutcome(Outcome.failed, error="sender address not verified")] * len(messages)

    summary = send_issue(settings, issue.id, Refusing(settings))
    assert summary.failed == 2
    assert {r.error for r in session.exec(select(Delivery)).all()} == {"sender address not verified"}


def test_refusals_that_name_their_reader_are_counted_as_one_reason(verdicts, session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=8)

    class Refusing(OutboxProvider):
        """Postmark's words for an inactive recipient name the address; three readers get them."""

        def send_batch(self, messages, *, campaign):
            return [
                SendOutcome(
                    Outcome.failed,
                    error=f"Postmark 406: Found inactive addresses: {m.to_email}."
                    if i < 3
                    else f"Postmark 30{i}: refused",
                )
                for i, m in enumerate(messages)
            ]

    summary = send_issue(settings, issue.id, Refusing(settings))
    assert summary.failed == 8
    show = verdicts("issue", "show", str(issue.id)).out
    assert "3 failed: Postmark 406: Found inactive addresses: <address>." in show and "reader0@" not in show
    assert "… and 1 more for other reasons" in show
    refused = session.exec(select(Delivery.email).where(Delivery.error.startswith("Postmark 406"))).all()
    assert sorted(refused) == [
        "reader0@example.com",
        "reader1@example.com",
        "reader2@example.com",
    ]  # the row still names them


def test_preflight_failure_sends_nothing(session, settings, tmp_path, monkeypatch):
    issue = seed_issue(session, tmp_path, readers=3)
    bad = get_by_email(session, "reader1@example.com")
    bad.name = "x" * 200  # the longest name there is
    session.add(bad)
    session.commit()
    from pipeline.email.render import Recipient, personalise, render_issue

    # An issue just under the clip, where this reader's long name tips their copy over it.
    typical = personalise(
        render_issue(session, issue, settings), Recipient(1, "reader0@example.com", "Reader 0"), settings
    )
    monkeypatch.setattr("pipeline.email.render.CLIP_BYTES", len(typical.html.encode()) + 100)
    with pytest.raises(RenderError, match="reader1@example.com"):
        send_issue(settings, issue.id, OutboxProvider(settings))
    assert sum(_recipients(settings).values()) == 0


def test_sigkill_mid_send_then_resume(session, settings, tmp_path):
    """A real process killed with SIGKILL while sending; the next run completes the list."""
    issue = seed_issue(session, tmp_path, readers=40)
    env = {**os.environ, "VERDICTS_BATCH_SIZE": "2", "VERDICTS_RATE_PER_SECOND": "20"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while sum(_recipients(settings).values()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sent_before = sum(_recipients(settings).values())
    assert 6 <= sent_before < 40, proc.stderr.read().decode()
    resume = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resume.returncode == 0, resume.stderr
    assert "finished" in resume.stdout and "re-sent after a crash" in resume.stdout
    assert _recipients(settings) == Counter({f"reader{i}@example.com": 1 for i in range(40)})


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "a first Ctrl-C"])
def test_sigterm_finishes_the_batch_in_flight_and_exits_cleanly(session, settings, tmp_path, stop):
    issue = seed_issue(session, tmp_path, readers=40)
    env = {**os.environ, "VERDICTS_BATCH_SIZE": "4", "VERDICTS_RATE_PER_SECOND": "20"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while sum(_recipients(settings).values()) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "not yet sent" in out and "after finishing the batch in flight" in err
    session.expire_all()
    statuses = Counter(d.status for d in session.exec(select(Delivery)).all())
    assert (
        statuses[DeliveryStatus.sending] == 0
        and statuses[DeliveryStatus.sent] == sum(_recipients(settings).values()) < 40
    )
    resume = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resume.returncode == 0 and "finished" in resume.stdout and "re-sent" not in resume.stdout
    assert _recipients(settings) == Counter({f"reader{i}@example.com": 1 for i in range(40)})
