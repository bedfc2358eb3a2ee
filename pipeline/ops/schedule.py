"""The operator's long-running process: APScheduler 3 runs the weekly job on a cron, sends approved issues
every SEND_POLL_MINUTES, and beats (`pipeline.ops.heartbeat`) so that the web app and the editor know it runs.

SIGTERM, or a first Ctrl-C, stops it as it stops `verdicts issue send`: a send in flight finishes its
batch and records it, the run's outcome is recorded, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pipeline.config import Settings
from pipeline.delivery.providers import get_fallback, get_provider
from pipeline.delivery.site_webhooks import sweep as webhooks_sweep
from pipeline.delivery.stop import STOP, graceful_stop
from pipeline.delivery.summary import SendSummary
from pipeline.delivery.welcome import send_pending_welcomes
from pipeline.errors import ConfigurationError, VerdictsError
from pipeline.logs import setup_logging
from pipeline.ops import heartbeat
from pipeline.ops.weekly import missed_approved, run_weekly, send_approved
from pipeline.store.db import DatabaseUnreachable, require_schema
from pipeline.store.models import Heartbeat, RunOutcome, saved_id, utcnow

log = logging.getLogger("verdicts.scheduler")

WEEKLY, CATCH_UP, APPROVED, BEAT = "weekly", "catch-up", "approved", "heartbeat"
Outcome = tuple[RunOutcome, str]


class Owed(NamedTuple):
    """A run of the schedule a start owes: the moment it was due, and why it did not happen."""

    due: datetime
    why: Literal["missed", "interrupted"]


def _outcome(summaries: list[SendSummary]) -> RunOutcome:
    """Stopped when SIGTERM cut a send short (the next run goes on from the ledger), else ok."""
    return RunOutcome.stopped if STOP.is_set() and any(not s.finished for s in summaries) else RunOutcome.ok


def weekly_job(settings: Settings) -> Outcome:
    try:
        result = run_weekly(settings, utcnow())
    except VerdictsError as exc:
        log.error("weekly job failed: %s", exc)
        return RunOutcome.failed, str(exc)
    log.info(result.message)  # a send's summary is logged once, by the send
    summaries = [result.summary] if result.summary else []
    return _outcome(summaries), " ".join([result.message, *(s.line() for s in summaries)])


def approved_job(settings: Settings, warned: set[int]) -> Outcome | None:
    """Issues an editor approved after the weekly run (or a send that was interrupted) go out here;
    one whose time passed while the scheduler was down is named once per process, not sent.
    None when there was nothing to do. The welcome emails still waiting go first: one query when there are none."""
    welcome_sweep(settings)
    webhooks_sweep(settings)
    try:
        summaries = send_approved(settings)
        for issue in missed_approved(settings):
            issue_id, due_at = saved_id(issue), issue.scheduled_for or issue.approved_at
            assert due_at is not None  # missed: due at a moment that passed
            if issue_id not in warned:
                warned.add(issue_id)
                log.warning(
                    "issue %s was due at %s, more than the %ss misfire grace ago (the scheduler was down?): "
                    "not sending it; `verdicts issue send %s` sends it now, "
                    "`verdicts issue unapprove %s` cancels it",
                    issue.id,
                    due_at.isoformat(),
                    settings.misfire_grace_seconds,
                    issue.id,
                    issue.id,
                    extra={"issue_id": issue.id},
                )
    except VerdictsError as exc:
        log.error("sending approved issues failed: %s", exc)
        return RunOutcome.failed, str(exc)
    if not summaries:
        return None
    return _outcome(summaries), " ".join(s.line() for s in summaries)


def welcome_sweep(settings: Settings) -> None:
    """The welcome emails a crash or an unavailable provider left waiting; a failure here never fails the
    issues' job (it is logged, and the next pass tries again)."""
    if STOP.is_set():
        return
    try:
        summary = send_pending_welcomes(settings)
    except (VerdictsError, SQLAlchemyError) as exc:
        log.error("sending the waiting welcome emails failed: %s", exc)
        return
    if summary.anything:
        log.info(summary.line())


def latest_due(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest moment of the schedule in the past week: the run a start may owe, or the one a run is for."""
    latest, probe = None, trigger.get_next_fire_time(None, now - timedelta(days=7))
    while probe is not None and probe <= now:
        latest = probe
        probe = trigger.get_next_fire_time(probe, probe + timedelta(seconds=1))
    return latest


def owed_run(trigger: CronTrigger, now: datetime, last: Heartbeat | None) -> Owed | None:
    """The moment of the schedule a start owes a run, and why: the scheduler was down over it ("missed"),
    or its run did not finish ("interrupted"); None when it owes nothing.

    APScheduler keeps its jobs in memory and cannot know what passed while the process was down; the
    heartbeat knows. Where no scheduler ever beat (a new site), none was down over anything; one that
    beat after the moment ran it, or decided about it when it started.
    """
    due = latest_due(trigger, now)
    if due is None or last is None:
        return None
    if last.last_run_due is not None and last.last_run_due >= due:
        return Owed(due, "interrupted") if last.last_run_due == due and heartbeat.interrupted(last) else None
    if last.beat_at >= due:
        return None
    return Owed(due, "missed")


def cron_trigger(settings: Settings) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(settings.schedule, timezone=settings.tz)
    except ValueError as exc:
        raise ConfigurationError(
            f"VERDICTS_SCHEDULE {settings.schedule!r} is not a cron expression ({exc}); e.g. '0 9 * * mon'"
        ) from None


class Scheduler:
    """The jobs, APScheduler running them, and the heartbeat that records them.

    Jobs run in a pool of threads; the heartbeat has a thread of its own, so a long send never holds
    it up (a send to a million readers takes an hour, and the scheduler is alive all along).
    """

    def __init__(self, settings: Settings, now: datetime | None = None, last: Heartbeat | None = None) -> None:
        self.settings = settings
        self.trigger = cron_trigger(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = utcnow()
        self.warned: set[int] = set()
        grace = settings.misfire_grace_seconds
        executors = {"default": ThreadPoolExecutor(), BEAT: ThreadPoolExecutor(1)}
        aps = self.aps = BackgroundScheduler(timezone=settings.tz, executors=executors)
        # A run missed while we were down happens once on start if within the grace, never twice.
        aps.add_job(
            self.weekly,
            self.trigger,
            id=WEEKLY,
            name="weekly issue",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=grace,
        )
        self.poll = IntervalTrigger(minutes=settings.send_poll_minutes)
        aps.add_job(self.approved, self.poll, id=APPROVED, name="send approved issues", coalesce=True, max_instances=1)
        aps.add_job(
            self.beat,
            IntervalTrigger(seconds=heartbeat.BEAT_SECONDS),
            id=BEAT,
            name="heartbeat",
            executor=BEAT,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=heartbeat.BEAT_SECONDS,
        )

        now = now or utcnow()
        owed = owed_run(self.trigger, now, last)
        late = (now - owed.due).total_seconds() if owed else 0.0
        if owed and late <= grace:
            why = (
                "was missed while stopped"
                if owed.why == "missed"
                else "did not finish (the scheduler stopped during it)"
            )
            log.info("the run due at %s %s; running it now (within the %ss grace)", owed.due.isoformat(), why, grace)
            aps.add_job(
                self.weekly,
                DateTrigger(now),
                kwargs={"due": owed.due},
                id=CATCH_UP,
                name="missed weekly issue",
                misfire_grace_time=None,
            )
        elif owed and owed.why == "missed" and late < 3600 * 24:
            log.warning(
                "the run due at %s was missed by more than the %ss grace: not sending now "
                "(`verdicts run-weekly` sends it); next run as scheduled",
                owed.due.isoformat(),
                grace,
            )
        elif last is None:
            log.info("no scheduler has run on this database before: its first run is the next one")

        def _missed(event: JobExecutionEvent) -> None:
            if event.job_id == WEEKLY:
                log.warning(
                    "missed the run due at %s (beyond the %ss misfire grace); waiting for the next one",
                    event.scheduled_run_time,
                    grace,
                )

        aps.add_listener(_missed, EVENT_JOB_MISSED)

    # --- the jobs ---------------------------------------------------------------------------------

    def weekly(self, due: datetime | None = None) -> None:
        """The weekly run, for the moment of the schedule ``due`` (the cron's latest, unless catching up)."""
        due = due or latest_due(self.trigger, utcnow())
        run = {"last_run_due": due, "last_run_job": WEEKLY}
        if STOP.is_set():  # handed to the pool as SIGTERM came: the next start runs it (within the grace)
            self.beat(
                **run,
                last_run_at=utcnow(),
                last_run_finished_at=utcnow(),
                last_run_outcome=RunOutcome.stopped,
                last_run_message="stopped before it started",
            )
            return
        self._record(run, lambda: weekly_job(self.settings))
        if not STOP.is_set():
            self.log_next()

    def approved(self) -> None:
        self._record({"last_run_job": APPROVED}, lambda: approved_job(self.settings, self.warned), quiet=True)

    def _record(self, run: dict[str, Any], job: Callable[[], Outcome | None], quiet: bool = False) -> None:
        """Beat around a job, with its start (unless ``quiet``: most looks for approved issues find none,
        and would hide the weekly run's outcome) and its outcome."""
        started = utcnow()
        if quiet:
            self.beat()
        else:
            self.beat(
                **run,
                last_run_at=started,
                last_run_finished_at=None,
                last_run_outcome=RunOutcome.running,
                last_run_message=None,
            )
        try:
            result = job()
        except BaseException as exc:
            result = (RunOutcome.failed, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if result is None:
                self.beat()
            else:
                outcome, message = result
                self.beat(
                    **run,
                    last_run_at=started,
                    last_run_finished_at=utcnow(),
                    last_run_outcome=outcome,
                    last_run_message=message[:1000],
                )

    # --- the heartbeat ----------------------------------------------------------------------------

    def beat(self, **values: Any) -> None:
        """Record that this scheduler is alive, its next runs, and ``values``. A database that does not answer
        costs a warning, never the scheduler: its runs go on (and wait for the database themselves)."""
        now = utcnow()
        values = {
            "owner": self.owner,
            "started_at": self.started_at,
            "beat_at": now,
            "stopped_at": None,
            "next_run_at": self.trigger.get_next_fire_time(None, now),
            "next_poll_at": self.poll.get_next_fire_time(None, now),
            **values,
        }
        try:
            heartbeat.save(self.settings.database_url, **values)
        except SQLAlchemyError as exc:
            log.warning("could not record the heartbeat: %s", str(exc).splitlines()[0][:200])

    def log_next(self) -> None:
        # From the trigger, not the scheduler: a job asking it would wait on the lock its shutdown holds while
        # it waits for the job.
        log.info("next run at %s", self.trigger.get_next_fire_time(None, utcnow()).isoformat())

    # --- running ----------------------------------------------------------------------------------

    def run_until_stopped(self) -> None:
        """Run until SIGTERM or Ctrl-C; then let the job in flight finish (its send stops after the batch in
        flight, as `issue send` does) and record it, before the process may exit: the pool's threads
        must not outlive the interpreter, which refuses them new work as it shuts down."""
        graceful_stop()
        log.info("scheduler started: schedule %r in %s", self.settings.schedule, self.settings.timezone)
        self.beat()
        self.log_next()
        if not STOP.is_set():
            self.aps.start()
        while not STOP.is_set():
            time.sleep(0.2)  # not Event.wait: the signal handler sets that event, and must not wait for its lock
        if self.aps.running:
            self.aps.shutdown(wait=True)
        self.beat(stopped_at=utcnow())
        log.info("scheduler stopped")


def wait_for_database(settings: Settings) -> None:
    """A server still starting (the machine just booted) is waited for, up to DB_RETRY_SECONDS; a database
    without its schema, or with another one, stops the scheduler now, not at its first run."""

    def _waiting(state: RetryCallState) -> None:
        log.warning("waiting for the database (%s)", state.outcome.exception() if state.outcome else "")

    for attempt in Retrying(
        retry=retry_if_exception_type(DatabaseUnreachable),
        stop=stop_after_delay(settings.db_retry_seconds),
        wait=wait_exponential(multiplier=0.5, max=10.0),
        before_sleep=_waiting,
        reraise=True,
    ):
        with attempt:
            require_schema(settings.database_url)


def run_forever(settings: Settings) -> None:
    setup_logging(settings.log_format, settings.log_level)
    wait_for_database(settings)
    # A missing credential should stop the operator now, not at 09:00 on Monday.
    for provider in filter(None, (get_provider(settings), get_fallback(settings))):
        provider.close()
    Scheduler(settings, last=heartbeat.load(settings.database_url)).run_until_stopped()
