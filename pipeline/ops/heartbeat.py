"""The scheduler's heartbeat: the scheduler writes it, `/healthz`, `/metrics` and the editor read it.

They run in other processes, often on other machines, so what they know of the scheduler is what it
wrote in the database: its last beat (every ``BEAT_SECONDS``, and around each job), its next runs, and
how its last run went. A beat older than ``STALE_SECONDS`` means it stopped, or hangs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session

from pipeline.store.db import dialect_insert, get_engine
from pipeline.store.models import Heartbeat, RunOutcome, utcnow

SCHEDULER = "scheduler"
BEAT_SECONDS = 30
#: Four beats missed, not one slow write (a send holding SQLite's write lock can delay a beat).
STALE_SECONDS = 4 * BEAT_SECONDS

Status = Literal["running", "stopped", "never seen"]


def save(database_url: str, **values: Any) -> None:
    """Write the scheduler's row: created by its first beat, then only the columns given change. One statement,
    so two schedulers starting at once on a new database do not trip over each other."""
    engine = get_engine(database_url)
    statement = dialect_insert(engine.dialect.name, Heartbeat).values(name=SCHEDULER, **values)
    statement = statement.on_conflict_do_update(
        index_elements=["name"], set_={k: statement.excluded[k] for k in values}
    )
    with engine.begin() as conn:
        conn.execute(statement)


def read(session: Session) -> Heartbeat | None:
    """The scheduler's row, or None where no scheduler ever ran; one lookup by primary key."""
    return session.get(Heartbeat, SCHEDULER)


def load(database_url: str) -> Heartbeat | None:
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        return read(session)


@dataclass(frozen=True)
class SchedulerState:
    record: Heartbeat | None
    now: datetime

    @property
    def age(self) -> float | None:
        """Seconds since the last beat."""
        return None if self.record is None else max(0.0, (self.now - self.record.beat_at).total_seconds())

    @property
    def status(self) -> Status:
        if self.record is None:
            return "never seen"
        if self.record.stopped_at is not None or (self.age or 0.0) > STALE_SECONDS:
            return "stopped"
        return "running"

    @property
    def running(self) -> bool:
        return self.status == "running"

    def report(self) -> dict[str, Any]:
        """What `/healthz` says of the scheduler: enough to tell that it runs and how its last run went.
        The run's message stays out (the page is public; the log and `verdicts` have it)."""
        r = self.record
        if r is None:
            return {"status": self.status}
        report: dict[str, Any] = {
            "status": self.status,
            "last_beat": _iso(r.beat_at),
            "last_beat_seconds": round(self.age or 0.0, 1),
            "next_run": _iso(r.next_run_at),
        }
        if r.stopped_at is not None:
            report["stopped_at"] = _iso(r.stopped_at)
        if r.last_run_at is not None:
            report["last_run"] = {
                "job": r.last_run_job,
                "started": _iso(r.last_run_at),
                "finished": _iso(r.last_run_finished_at),
                "outcome": r.last_run_outcome.value if r.last_run_outcome else None,
            }
        return report


def state(session: Session, now: datetime | None = None) -> SchedulerState:
    return SchedulerState(read(session), now or utcnow())


def interrupted(record: Heartbeat) -> bool:
    """The last weekly run did not finish: stopped by SIGTERM, or still "running" in a process that died."""
    return record.last_run_outcome in (RunOutcome.running, RunOutcome.stopped)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
