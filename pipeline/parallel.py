"""Several sender processes on one issue (`verdicts issue send ID --workers N`).

The parent freezes the audience and checks every reader's copy once; then N processes run
the ordinary campaign loop side by side. They never get the same row (PostgreSQL: SKIP
LOCKED; SQLite: one writer at a time), so the work simply splits; the parent reports
progress from the ledger and adds their summaries up.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

from sqlmodel import Session

from pipeline.config import Settings, get_settings
from pipeline.db import get_engine
from pipeline.issues import delivery_counts, get_issue
from pipeline.providers import get_fallback, get_provider
from pipeline.send import ProgressFn, SendSummary, _finish, check_copies, rendered_and_started, send_issue, sent_before


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


def _prepare(settings: Settings, issue_id: int) -> SendSummary:
    summary = SendSummary(issue_id, primary=settings.provider)
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        issue = get_issue(session, issue_id)
        if not sent_before(session, issue, summary):
            rendered, summary.audience = rendered_and_started(session, issue, settings)
            check_copies(session, rendered, settings)
    return summary


def send_parallel(settings: Settings, issue_id: int, workers: int, on_progress: ProgressFn | None = None) -> SendSummary:
    started = time.monotonic()
    summary = _prepare(settings, issue_id)
    if summary.already_sent:
        return summary
    engine = get_engine(settings.database_url)
    engine.dispose()  # children open their own connections; none is inherited
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_worker, issue_id) for _ in range(workers)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            if on_progress:
                with Session(engine) as session:
                    counts = delivery_counts(session, issue_id)
                on_progress(summary.audience - counts["pending"] - counts["sending"], summary.audience)
            if any(f.done() and f.exception() for f in futures):
                break
        for future in futures:
            part = future.result()  # the first worker error is the command's error
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
