"""The operator's long-running process: cron from config, coalescing, misfire grace, clean stop,
and real scheduler processes racing each other and a manual run."""

from __future__ import annotations

import email
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path

import pytest
from sqlmodel import select, update

from pipeline.config import get_settings
from pipeline.errors import EXIT_CONFIGURATION, EXIT_TEMPORARY, VerdictsError
from pipeline.ops import heartbeat
from pipeline.ops.schedule import Scheduler
from pipeline.store.models import Delivery, DeliveryStatus, Heartbeat, Issue, IssueStatus, RunOutcome, utcnow
from tests.conftest import NOW, comparison, seed_issue, write_json
from tests.fakes.provider_api import TEST_CREDENTIALS, TEST_ENV, FakeProviderAPI, Fault

ROOT = Path(__file__).resolve().parent.parent


def test_job_follows_the_configured_cron_and_time_zone(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_SCHEDULE", "30 7 * * fri")
    monkeypatch.setenv("VERDICTS_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("VERDICTS_MISFIRE_GRACE_SECONDS", "900")
    get_settings.cache_clear()
    job = Scheduler(get_settings()).aps.get_job("weekly")
    assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 900
    nxt = job.trigger.get_next_fire_time(None, datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    assert (nxt.weekday(), nxt.hour, nxt.minute, str(nxt.tzinfo)) == (4, 7, 30, "Europe/Berlin")


def test_bad_cron_is_a_clear_error(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_SCHEDULE", "every monday")
    get_settings.cache_clear()
    with pytest.raises(VerdictsError, match="VERDICTS_SCHEDULE 'every monday' is not a cron expression"):
        Scheduler(get_settings())


@pytest.mark.parametrize("entry", [["scheduler.py"], ["-m", "pipeline.cli", "scheduler"]])
def test_scheduler_process_logs_next_run_and_stops_on_sigterm(settings, entry):
    args = [sys.executable, *([str(ROOT / entry[0])] if entry[0].endswith(".py") else entry)]
    proc = subprocess.Popen(args, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "next run at" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    log = "".join(lines) + out
    assert proc.returncode == 0, log
    assert "schedule '0 9 * * mon' in UTC" in log and "next run at 20" in log and "stopping" in log


def test_the_scheduler_refuses_to_start_where_it_could_never_send(workdir, verdicts, monkeypatch):
    """Each of these used to start, log "scheduler started", and fail only at the first send."""
    no_tables = verdicts("scheduler")
    assert no_tables.code == EXIT_CONFIGURATION and "run `verdicts init`" in no_tables.err
    assert verdicts("init").code == 0
    monkeypatch.delenv("VERDICTS_SECRET_KEY")  # the development key, on a real site
    monkeypatch.setenv("VERDICTS_BASE_URL", "https://news.verdicts.test")
    dev_key = verdicts("scheduler")
    assert dev_key.code == EXIT_CONFIGURATION and "VERDICTS_SECRET_KEY is the development key" in dev_key.err


def test_the_scheduler_waits_for_a_database_server_that_is_not_up_yet_then_gives_up(workdir):
    """At boot the database server may start after the scheduler: it waits DB_RETRY_SECONDS, saying so."""
    env = {
        **os.environ,
        "VERDICTS_DATABASE_URL": "postgresql+psycopg://verdicts@127.0.0.1:1/verdicts",
        "VERDICTS_DB_RETRY_SECONDS": "2",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scheduler"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == EXIT_TEMPORARY and time.monotonic() - started >= 2  # systemd may try again
    assert "waiting for the database" in proc.stderr and "scheduler started" not in proc.stderr
    assert "error: cannot open the database postgresql+psycopg://127.0.0.1:1/verdicts" in proc.stderr


def _beat(at: datetime, **run) -> Heartbeat:
    """What a scheduler that last beat ``at`` left in the database."""
    return Heartbeat(name=heartbeat.SCHEDULER, owner="earlier:1", started_at=at - timedelta(days=3), beat_at=at, **run)


def test_a_run_missed_within_the_grace_happens_once_on_start(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_SCHEDULE", "0 9 * * mon")
    get_settings.cache_clear()
    settings = get_settings()
    monday_0900 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    down_since_friday = _beat(monday_0900 - timedelta(days=3))

    def jobs(now: datetime, last: Heartbeat | None) -> set[str]:
        return {j.id for j in Scheduler(settings, now=now, last=last).aps.get_jobs()}

    assert jobs(monday_0900 + timedelta(minutes=30), down_since_friday) == {
        "weekly",
        "approved",
        "heartbeat",
        "catch-up",
    }
    # Beyond the 1 h grace: no surprise send.
    assert jobs(monday_0900 + timedelta(hours=4), down_since_friday) == {"weekly", "approved", "heartbeat"}
    # Up at 09:00 and it ran: nothing owed, however soon the restart.
    ran = _beat(monday_0900 + timedelta(minutes=20), last_run_due=monday_0900, last_run_outcome=RunOutcome.ok)
    assert jobs(monday_0900 + timedelta(minutes=30), ran) == {"weekly", "approved", "heartbeat"}
    # SIGTERM (or a kill) stopped the 09:00 run during its send: a restart within the grace finishes it.
    for cut in (RunOutcome.stopped, RunOutcome.running):
        cut_short = _beat(monday_0900 + timedelta(minutes=10), last_run_due=monday_0900, last_run_outcome=cut)
        assert jobs(monday_0900 + timedelta(minutes=30), cut_short) == {"weekly", "approved", "heartbeat", "catch-up"}


def test_a_first_start_owes_no_run_and_warns_of_none(workdir, monkeypatch, caplog):
    """A new site: no scheduler ever ran here, so none was down when the last 09:00 passed."""
    monkeypatch.setenv("VERDICTS_SCHEDULE", "0 9 * * mon")
    get_settings.cache_clear()
    caplog.set_level(logging.INFO, "verdicts.scheduler")
    monday_0900 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    for later in (timedelta(minutes=30), timedelta(hours=4)):
        jobs = {j.id for j in Scheduler(get_settings(), now=monday_0900 + later).aps.get_jobs()}
        assert jobs == {"weekly", "approved", "heartbeat"}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "its first run is the next one" in caplog.text


class Child:
    """A `verdicts` process whose output a thread collects, so a test can wait for a line without blocking on a pipe."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=os.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.log.count(needle) < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, f"no {needle!r} (x{count}) in:\n{self.log}"
            time.sleep(0.05)

    def finish(self, stop: bool = False, timeout: float = 30) -> int:
        if stop:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code


def _cron_at(moment: datetime) -> str:
    """A daily cron (UTC) that fires at ``moment``'s minute: a real schedule relative to the real clock."""
    return f"{moment.minute} {moment.hour} * * *"


def _seed(session, tmp_path: Path, readers: int) -> None:
    """This week's comparisons, by the real clock (the processes use it), and confirmed readers."""
    from pipeline.content.importing import load_files, upsert
    from subscribers.service import add_subscriber

    yesterday = utcnow() - timedelta(days=1)
    upsert(
        session, load_files([write_json(tmp_path / "c.json", [comparison("a", yesterday), comparison("b", yesterday)])])
    )
    for i in range(readers):
        add_subscriber(session, f"reader{i}@example.com", f"Reader {i}", confirmed=True)
    session.commit()


def _down_since(moment: datetime) -> None:
    """A scheduler ran on this site before, and last beat at ``moment``: it was down since."""
    get_settings.cache_clear()
    heartbeat.save(
        get_settings().database_url, owner="earlier:1", started_at=moment - timedelta(days=3), beat_at=moment
    )


def _sent_by(log: str, prefix: str) -> int:
    """Messages a process reports having sent, from its summary lines (each logged once under ``prefix``)."""
    return sum(int(n) for n in re.findall(rf"{re.escape(prefix)}issue \d+: sent (\d+)", log))


def test_two_schedulers_and_a_manual_run_at_the_same_moment_send_one_issue_once(workdir, session, monkeypatch):
    readers = 12
    _seed(session, workdir, readers)
    # The weekly run fell due a minute ago: every scheduler starting now owes it (within the grace).
    monkeypatch.setenv("VERDICTS_SCHEDULE", _cron_at(utcnow() - timedelta(minutes=1)))
    monkeypatch.setenv("VERDICTS_MISFIRE_GRACE_SECONDS", "3600")
    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    monkeypatch.setenv("VERDICTS_BATCH_SIZE", "2")  # several claims each, so the three senders interleave
    _down_since(utcnow() - timedelta(hours=1))
    schedulers = [Child("scheduler"), Child("scheduler")]
    manual = Child("run-weekly")
    assert manual.finish() == 0, manual.log
    for s in schedulers:
        s.wait_for("scheduler started")
    # Each owes the run unless the other's first beat (after the missed moment) came before it looked.
    catching_up = [s for s in schedulers if "running it now" in s.log]
    assert catching_up, [s.log for s in schedulers]
    for s in schedulers:
        s.wait_for("next run at", count=2 if s in catching_up else 1)  # the second one is logged after the catch-up ran
    codes = [s.finish(stop=True) for s in schedulers]
    logs = [s.log for s in schedulers]
    assert codes == [0, 0], logs
    assert not any("ERROR" in log or "Traceback" in log for log in logs), logs

    issues = session.exec(select(Issue)).all()
    assert len(issues) == 1 and issues[0].status is IssueStatus.sent
    deliveries = session.exec(select(Delivery)).all()
    assert len(deliveries) == readers and len({d.subscriber_id for d in deliveries}) == readers
    assert {(d.status, d.attempts) for d in deliveries} == {(DeliveryStatus.sent, 1)}
    copies = [email.message_from_bytes(p.read_bytes(), policy=default)["To"] for p in workdir.glob("outbox/*/*.eml")]
    assert sorted(copies) == sorted({c for c in copies}) and len(copies) == readers
    # Whoever got there first sent; the sums prove nobody sent a row twice.
    assert _sent_by(manual.log, "") + sum(_sent_by(log, "pipeline.delivery.send: ") for log in logs) == readers


def test_a_scheduler_started_beyond_the_grace_says_so_and_sends_nothing(workdir, session, monkeypatch):
    _seed(session, workdir, readers=3)
    monkeypatch.setenv("VERDICTS_SCHEDULE", _cron_at(utcnow() - timedelta(hours=2)))
    monkeypatch.setenv("VERDICTS_MISFIRE_GRACE_SECONDS", "600")
    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    _down_since(utcnow() - timedelta(hours=3))
    scheduler = Child("scheduler")
    scheduler.wait_for("next run at")
    time.sleep(1)  # a catch-up job, had one been added, would have run by now
    assert scheduler.finish(stop=True) == 0, scheduler.log
    assert re.search(
        r"WARNING verdicts\.scheduler: the run due at \S+ was missed by more than the 600s grace: not sending now",
        scheduler.log,
    ), scheduler.log
    assert "running it now" not in scheduler.log
    assert session.exec(select(Issue)).all() == [] and session.exec(select(Delivery)).all() == []
    assert not list(workdir.glob("outbox/*/*.eml"))


def test_a_run_that_read_the_draft_before_another_run_sent_it_does_not_set_it_back(workdir, session, monkeypatch):
    """On PostgreSQL two runs can both read the draft; the slower one must not turn the issue
    back into "approved", which would freeze the audience again and mail readers who joined since."""
    from pipeline.ops import weekly

    issue = seed_issue(session, workdir, approved=False)
    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    real_build = weekly.build_issue

    def overtaken(run_session, **kwargs):
        built = real_build(run_session, **kwargs)
        # The other run approves and sends it after our read; our copy of the row still says draft.
        run_session.exec(
            update(Issue)
            .where(Issue.id == built.issue.id)
            .values(status=IssueStatus.sent)
            .execution_options(synchronize_session=False)
        )
        return built

    monkeypatch.setattr(weekly, "build_issue", overtaken)
    get_settings.cache_clear()
    result = weekly.run_weekly(get_settings(), NOW)
    session.expire_all()
    assert "Nothing to send" in result.message and result.summary is None
    assert session.get(Issue, issue.id).status is IssueStatus.sent and session.exec(select(Delivery)).all() == []


def test_an_approved_issue_whose_time_passed_while_the_scheduler_was_down_is_named_not_sent(workdir, session, caplog):
    from pipeline.ops.schedule import approved_job

    issue = seed_issue(session, workdir)
    session.exec(update(Issue).values(approved_at=utcnow() - timedelta(days=2)))
    session.commit()
    get_settings.cache_clear()
    warned: set[int] = set()
    for _poll in range(2):
        approved_job(get_settings(), warned)
    named = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(named) == 1 and f"`verdicts issue send {issue.id}` sends it now" in named[0], named
    assert session.exec(select(Delivery)).all() == []

    session.exec(update(Issue).values(approved_at=utcnow()))  # approved just now: the next poll sends it
    session.commit()
    approved_job(get_settings(), warned)
    session.expire_all()
    assert len(session.exec(select(Delivery)).all()) == 5 and session.get(Issue, issue.id).status is IssueStatus.sent


def _postmark(fake, monkeypatch, batch: int) -> None:
    for key, value in {
        "VERDICTS_PROVIDER": "postmark",
        "VERDICTS_PROVIDER_BASE_URL": fake.base_url,
        "VERDICTS_BATCH_SIZE": str(batch),
        **TEST_ENV["postmark"],
    }.items():
        monkeypatch.setenv(key, value)


def test_sigterm_during_a_send_finishes_the_batch_in_flight_records_it_and_exits_0(workdir, session, monkeypatch):
    """Tried before: two ERROR tracebacks (`cannot schedule new futures after shutdown`, then in the next-run
    log), and each summary logged twice. Now it stops as `issue send` does, and a restart sends the rest."""
    readers = 30
    _seed(session, workdir, readers)
    with FakeProviderAPI("postmark", TEST_CREDENTIALS["postmark"]) as fake:
        fake.fail_next(*[Fault.slow(0.3)] * readers)  # each batch stays with the provider a while: SIGTERM finds one
        _postmark(fake, monkeypatch, batch=3)
        monkeypatch.setenv("VERDICTS_SCHEDULE", _cron_at(utcnow() - timedelta(minutes=1)))
        monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
        _down_since(utcnow() - timedelta(hours=1))
        first = Child("scheduler")
        deadline = time.monotonic() + 30
        while len(fake.accepted) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.finish(stop=True) == 0, first.log
        assert "Traceback" not in first.log and " ERROR " not in first.log, first.log
        summaries = re.findall(r".*issue \d+: sent .*", first.log)
        assert len(summaries) == 1 and "not yet sent" in summaries[0], first.log
        assert first.log.count("received SIGTERM") == 1 and first.log.rstrip().endswith("scheduler stopped"), first.log

        session.expire_all()
        statuses = Counter(d.status for d in session.exec(select(Delivery)).all())
        # The batch in flight was recorded: every copy the provider took is "sent", the rest wait.
        assert set(statuses) == {DeliveryStatus.sent, DeliveryStatus.pending}, statuses
        assert statuses[DeliveryStatus.sent] == len(fake.accepted) < readers
        record = session.get(Heartbeat, heartbeat.SCHEDULER)
        assert record.last_run_outcome is RunOutcome.stopped and "not yet sent" in record.last_run_message
        assert record.stopped_at is not None and record.last_run_due is not None

        second = Child("scheduler")  # within the grace, the run that did not finish runs again
        second.wait_for(" finished (")
        assert second.finish(stop=True) == 0, second.log
        assert "did not finish" in second.log, second.log
        assert "Traceback" not in second.log and " ERROR " not in second.log, second.log
        assert len(re.findall(r"issue \d+: sent ", second.log)) == 1
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(readers)})
    session.expire_all()
    assert {d.status for d in session.exec(select(Delivery)).all()} == {DeliveryStatus.sent}
    assert session.get(Heartbeat, heartbeat.SCHEDULER).last_run_outcome is RunOutcome.ok


def test_a_first_start_warns_of_nothing_beats_and_healthz_follows_it(workdir, session, client, monkeypatch):
    """A new site whose weekly moment passed minutes ago: no scheduler was ever down over it."""
    _seed(session, workdir, readers=2)
    assert client.get("/healthz").json()["scheduler"] == {"status": "never seen"}
    monkeypatch.setenv("VERDICTS_SCHEDULE", _cron_at(utcnow() - timedelta(minutes=2)))
    scheduler = Child("scheduler")
    scheduler.wait_for("next run at")
    running = client.get("/healthz")
    assert running.status_code == 200 and client.get("/healthz/scheduler").status_code == 200, running.text
    report = running.json()["scheduler"]
    assert report["status"] == "running" and report["last_beat_seconds"] < 30
    assert report["next_run"] == datetime.fromisoformat(report["next_run"]).isoformat() > utcnow().isoformat()
    time.sleep(1)  # a catch-up, had it been owed, would have run by now
    started = scheduler.log
    assert "WARNING" not in started and "missed" not in started and "running it now" not in started, started
    assert scheduler.finish(stop=True) == 0, scheduler.log
    assert session.exec(select(Issue)).all() == []
    stopped = client.get("/healthz")
    assert stopped.status_code == 200 and stopped.json()["status"] == "degraded"
    assert stopped.json()["scheduler"]["status"] == "stopped" and client.get("/healthz/scheduler").status_code == 503
