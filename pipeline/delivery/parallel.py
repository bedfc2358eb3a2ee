"""Several sender processes on one issue (`verdicts issue send ID --workers N`).

The parent freezes the audience and checks every reader's copy once; then N processes run
the ordinary campaign loop side by side. They never get the same row (PostgreSQL: SKIP
LOCKED; SQLite: one writer at a time), so the work simply splits; the parent reports
progress from the ledger and adds their summaries up.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.synchronize import Event

from sqlmodel import Session

from pipeline.config import Settings, get_settings
from pipeline.content.issues import delivery_counts, get_issue
from pipeline.delivery.providers import get_fallback, get_provider
from pipeline.delivery.send import ProgressFn, _finish, rendered_and_started, send_issue, sent_before
from pipeline.delivery.stop import STOP, graceful_stop
from pipeline.delivery.summary import SendSummary
from pipeline.errors import VerdictsError
from pipeline.store.db import get_engine


class WorkerDied(VerdictsError):
    """A sender process ended without a word (SIGKILL, the OOM killer): its batch is the crash recovery's."""


def _listen(stop: Event) -> None:
    """A worker stops as its parent does: after the batch in flight. The parent's stop (SIGTERM, a
    first Ctrl-C) reaches it through ``stop``; a SIGTERM of its own (systemd stops every process of
    the service) does the same, and Ctrl-C, which the terminal sends every process, is the parent's
    to act on. Killed outright, a worker left its batch to the crash recovery, and readers two copies."""
    graceful_stop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Relayed by a thread: the loop checks STOP between batches, and a signal handler must not
    # wait on the shared event's lock (is_set takes it), which a handler interrupting it would hold.
    def relay() -> None:
        stop.wait()
        STOP.set()

    threading.Thread(target=relay, name="stop-relay", daemon=True).start()


def _worker(issue_id: int) -> SendSummary:
    """One sender process: configuration from the same environment, its own provider clients."""
    settings = get_settings()
    provider, fallback = get_provider(settings), get_fallback(settings)
    try:
        return send_issue(settings, issue_id, provider, fallback=fallback, checked=True)
    finally:
        provider.close()
        if fallback:
            fallback.close()


def _prepare(settings: Settings, issue_id: int, actor: str | None) -> SendSummary:
    summary = SendSummary(issue_id, primary=settings.provider)
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        issue = get_issue(session, issue_id)
        if not sent_before(session, issue, summary):
            # Every copy is built once here, before the status moves; the workers skip it.
            _, summary.audience = rendered_and_started(session, issue, settings, actor=actor)
    return summary


def send_parallel(
    settings: Settings, issue_id: int, workers: int, on_progress: ProgressFn | None = None, *, actor: str | None = None
) -> SendSummary:
    """The parent starts (or resumes) the send as ``actor``; the workers then join it."""
    started = time.monotonic()
    summary = _prepare(settings, issue_id, actor)
    if summary.already_sent:
        return summary
    engine = get_engine(settings.database_url)
    engine.dispose()  # children open their own connections; none is inherited
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_listen, initargs=(stop,)) as pool:
        futures = [pool.submit(_worker, issue_id) for _ in range(workers)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            if STOP.is_set():
                stop.set()
            if on_progress:
                with Session(engine) as session:
                    counts = delivery_counts(session, issue_id)
                on_progress(summary.audience - counts["pending"] - counts["sending"], summary.audience)
            if any(f.done() and f.exception() for f in futures):
                break
        for future in futures:
            try:
                part = future.result()  # the first worker error is the command's error
            except BrokenProcessPool:
                raise WorkerDied(
                    f"a sender process of issue {issue_id} died (killed, or out of memory): the others stopped; "
                    f"`verdicts issue send {issue_id}` resumes the send (AFTER_CRASH decides what happens to the "
                    "rows it had in flight)"
                ) from None
            summary.sent += part.sent
            summary.failed += part.failed
            summary.suppressed += part.suppressed
            summary.requeued += part.requeued
            summary.resent_unknown += part.resent_unknown
            for name, n in part.carried.items():
                summary.carried[name] = summary.carried.get(name, 0) + n
    with Session(engine, expire_on_commit=False) as session:
        _finish(session, get_issue(session, issue_id), summary)
    summary.seconds = time.monotonic() - started
    return summary
