"""Several senders on one issue: four `verdicts issue send` processes at once, and one with
`--workers 4`; through a loopback provider that counts every message it accepts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlmodel import select

from pipeline.store.db import session_scope
from pipeline.store.models import Delivery, DeliveryStatus, Issue, IssueStatus
from tests.conftest import seed_issue
from tests.fakes.provider_api import TEST_CREDENTIALS, TEST_ENV, FakeProviderAPI
from tests.fakes.readers import add_readers

READERS = 240


@pytest.fixture
def postmark(workdir, settings, monkeypatch):
    with FakeProviderAPI("postmark", TEST_CREDENTIALS["postmark"]) as fake:
        env = {
            "VERDICTS_PROVIDER": "postmark",
            "VERDICTS_PROVIDER_BASE_URL": fake.base_url,
            "VERDICTS_BATCH_SIZE": "7",
            "VERDICTS_RATE_PER_SECOND": "100",
            "VERDICTS_PROVIDER_RETRY_BASE_SECONDS": "0.01",
            **TEST_ENV["postmark"],
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with session_scope(settings.database_url) as session:
            issue = seed_issue(session, workdir, readers=0)
        add_readers(settings.database_url, READERS)
        yield fake, issue.id


def _exactly_once(fake, settings) -> set[str]:
    assert fake.violations == []
    assert max(r.messages for r in fake.requests) <= 7  # no claim ever took more than its batch
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(READERS)})
    with session_scope(settings.database_url) as session:
        rows = session.exec(select(Delivery)).all()
        assert {r.status for r in rows} == {DeliveryStatus.sent} and len(rows) == READERS
        assert session.exec(select(Issue)).one().status is IssueStatus.sent
        return {r.claimed_by.split(":")[1] for r in rows}


def test_four_sender_processes_at_once_send_every_delivery_exactly_once(postmark, settings):
    fake, issue_id = postmark
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue_id)],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    pids = _exactly_once(fake, settings)
    assert len(pids) >= 2  # the work really was shared
    assert sum(int(out.split("sent ")[1].split(",")[0]) for out, _ in results) == READERS


def test_workers_option_splits_one_send_across_processes(postmark, settings, verdicts):
    fake, issue_id = postmark
    result = verdicts("issue", "send", str(issue_id), "--workers", "4")
    assert result.code == 0, result.err
    assert f"sent {READERS}," in result.out and "finished" in result.out
    assert len(_exactly_once(fake, settings)) >= 2


def test_two_weekly_runs_at_the_same_moment_make_one_issue_and_one_copy_each(postmark, settings, workdir, monkeypatch):
    """A scheduler and a manual `run-weekly` (or two schedulers) firing together."""
    fake, issue_id = postmark
    with session_scope(settings.database_url) as session:
        session.delete(session.get(Issue, issue_id))  # let the runs build this week's issue themselves
    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run-weekly", "--now", "2026-11-25T12:00:00+00:00"],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    with session_scope(settings.database_url) as session:
        assert len(session.exec(select(Issue)).all()) == 1
    _exactly_once(fake, settings)


@pytest.mark.parametrize("who", ["the parent", "every process (as systemd stops a service)"])
def test_sigterm_stops_every_worker_after_its_batch_in_flight_and_the_resume_sends_each_reader_once(
    postmark, settings, monkeypatch, who
):
    fake, issue_id = postmark
    monkeypatch.setenv("VERDICTS_RATE_PER_SECOND", "30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue_id), "--workers", "2"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(fake.accepted) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    if who == "the parent":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "not yet sent" in out and "Traceback" not in err
    with session_scope(settings.database_url) as session:
        statuses = Counter(d.status for d in session.exec(select(Delivery)).all())
    assert statuses[DeliveryStatus.sending] == 0 and statuses[DeliveryStatus.unknown] == 0
    assert statuses[DeliveryStatus.sent] == len(fake.accepted) < READERS
    monkeypatch.setenv("VERDICTS_RATE_PER_SECOND", "0")
    resume = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue_id)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resume.returncode == 0 and "finished" in resume.stdout and "re-sent" not in resume.stdout, resume.stderr
    _exactly_once(fake, settings)
