"""The operator's long-running process: APScheduler 3 runs the weekly job on a cron."""

from __future__ import annotations

import logging
import signal
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pipeline.config import Settings
from pipeline.db import DatabaseUnreachable, require_schema
from pipeline.errors import VerdictsError
from pipeline.models import utcnow
from pipeline.providers import get_fallback, get_provider
from pipeline.weekly import missed_approved, run_weekly, send_approved

log = logging.getLogger("verdicts.scheduler")


def weekly_job(settings: Settings) -> None:
    try:
        result = run_weekly(settings, utcnow())
    except VerdictsError as exc:
        log.error("weekly job failed: %s", exc)
        return
    log.info(result.message)
    if result.summary:
        log.info(result.summary.line())


def approved_job(settings: Settings, warned: set[int]) -> None:
    """Issues an editor approved after the weekly run (or a send that was interrupted) go out here;
    one whose time passed while the scheduler was down is named once per process, not sent."""
    try:
        for summary in send_approved(settings):
            log.info(summary.line())
        for issue in missed_approved(settings):
            if issue.id not in warned:
                warned.add(issue.id)
                due_at = issue.scheduled_for or issue.approved_at
                log.warning("issue %s was due at %s, more than the %ss misfire grace ago (the scheduler was down?): not sending it; "
                            "`verdicts issue send %s` sends it now, `verdicts issue unapprove %s` cancels it",
                            issue.id, due_at.isoformat(), settings.misfire_grace_seconds, issue.id, issue.id)
    except VerdictsError as exc:
        log.error("sending approved issues failed: %s", exc)


def missed_run(trigger: CronTrigger, now: datetime, grace_seconds: int) -> tuple[datetime | None, bool]:
    """The latest scheduled time in the past week, and whether it is still within the grace.

    The job store is in memory, so APScheduler cannot know about a run missed while the
    process was down; this recomputes it from the cron. Running twice is harmless (one
    issue per week, one copy per reader), so "within the grace" simply runs once now.
    """
    latest, probe = None, trigger.get_next_fire_time(None, now - timedelta(days=7))
    while probe is not None and probe <= now:
        latest = probe
        probe = trigger.get_next_fire_time(probe, probe + timedelta(seconds=1))
    return latest, latest is not None and (now - latest).total_seconds() <= grace_seconds


def build_scheduler(settings: Settings, now: datetime | None = None) -> BlockingScheduler:
    try:
        trigger = CronTrigger.from_crontab(settings.schedule, timezone=settings.tz)
    except ValueError as exc:
        raise VerdictsError(f"VERDICTS_SCHEDULE {settings.schedule!r} is not a cron expression ({exc}); e.g. '0 9 * * mon'") from None
    scheduler = BlockingScheduler(timezone=settings.tz)
    scheduler.add_job(
        weekly_job, trigger, args=[settings], id="weekly", name="weekly issue",
        # A run missed while we were down happens once on start if within the grace, never twice.
        coalesce=True, max_instances=1, misfire_grace_time=settings.misfire_grace_seconds, replace_existing=True,
    )

    scheduler.add_job(approved_job, IntervalTrigger(minutes=settings.send_poll_minutes), args=[settings, set()], id="approved",
                      name="send approved issues", coalesce=True, max_instances=1, replace_existing=True)
    now = now or utcnow()
    latest, within_grace = missed_run(trigger, now, settings.misfire_grace_seconds)
    if within_grace:
        log.info("the run due at %s was missed while stopped; running it now (within the %ss grace)", latest.isoformat(), settings.misfire_grace_seconds)
        scheduler.add_job(weekly_job, DateTrigger(now), args=[settings], id="catch-up", name="missed weekly issue", misfire_grace_time=None)
    elif latest is not None and (now - latest).total_seconds() < 3600 * 24:
        log.warning("the run due at %s was missed by more than the %ss grace: not sending now (`verdicts run-weekly` "
                    "sends it); next run as scheduled", latest.isoformat(), settings.misfire_grace_seconds)

    def _missed(event: JobExecutionEvent) -> None:
        log.warning("missed the run due at %s (beyond the %ss misfire grace); waiting for the next one",
                    event.scheduled_run_time, settings.misfire_grace_seconds)

    scheduler.add_listener(_missed, EVENT_JOB_MISSED)
    return scheduler


def _log_next(scheduler: BlockingScheduler) -> None:
    job = scheduler.get_job("weekly")
    when = job.next_run_time if getattr(job, "next_run_time", None) else job.trigger.get_next_fire_time(None, utcnow())
    log.info("next run at %s", when.isoformat())


def wait_for_database(settings: Settings) -> None:
    """A server still starting (the machine just booted) is waited for, up to DB_RETRY_SECONDS; a database
    without its schema, or with another one, stops the scheduler now, not at its first run."""
    def _waiting(state: RetryCallState) -> None:
        log.warning("waiting for the database (%s)", state.outcome.exception() if state.outcome else "")

    for attempt in Retrying(retry=retry_if_exception_type(DatabaseUnreachable), stop=stop_after_delay(settings.db_retry_seconds),
                            wait=wait_exponential(multiplier=0.5, max=10.0), before_sleep=_waiting, reraise=True):
        with attempt:
            require_schema(settings.database_url)


def run_forever(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    wait_for_database(settings)
    # A missing credential should stop the operator now, not at 09:00 on Monday.
    for provider in filter(None, (get_provider(settings), get_fallback(settings))):
        provider.close()
    scheduler = build_scheduler(settings)

    def _stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        try:
            scheduler.shutdown(wait=False)
        except SchedulerNotRunningError:  # stopped before it started
            raise SystemExit(0) from None

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheduler.add_listener(lambda _e: _log_next(scheduler), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    log.info("scheduler started: schedule %r in %s", settings.schedule, settings.timezone)
    _log_next(scheduler)
    scheduler.start()
    log.info("scheduler stopped")
