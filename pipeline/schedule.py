"""The operator's long-running process: APScheduler 3 runs the weekly job on a cron."""

from __future__ import annotations

import logging
import signal

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from pipeline.config import Settings
from pipeline.errors import VerdictsError
from pipeline.models import utcnow
from pipeline.weekly import run_weekly

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


def build_scheduler(settings: Settings) -> BlockingScheduler:
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

    def _missed(event: JobExecutionEvent) -> None:
        log.warning("missed the run due at %s (beyond the %ss misfire grace); waiting for the next one",
                    event.scheduled_run_time, settings.misfire_grace_seconds)

    scheduler.add_listener(_missed, EVENT_JOB_MISSED)
    return scheduler


def _log_next(scheduler: BlockingScheduler) -> None:
    job = scheduler.get_job("weekly")
    when = job.next_run_time if getattr(job, "next_run_time", None) else job.trigger.get_next_fire_time(None, utcnow())
    log.info("next run at %s", when.isoformat())


def run_forever(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
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
