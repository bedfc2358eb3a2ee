"""Crash anywhere: real `verdicts issue send` processes killed with SIGKILL at random moments
(20 trials, a slow provider so many kills land inside a provider call), then resumed.
Every reader gets the issue; duplicates stay within the batch in flight and are reported;
with Resend's Idempotency-Key there are none. The figures go to RELIABILITY.md."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select

from pipeline.db import session_scope
from pipeline.models import Delivery, DeliveryStatus
from tests.conftest import seed_issue
from tests.reliability_report import write_reliability
from tests.fakes.provider_api import TEST_CREDENTIALS, TEST_ENV, FakeProviderAPI, Fault
from tests.fakes.readers import add_readers

TRIALS, READERS, BATCH = 20, 30, 5


@dataclass
class Trial:
    provider: str
    kill_after: float
    phase: str
    lost: int
    duplicates: int
    reported: int


def _phase(fake: FakeProviderAPI, in_flight: list[str]) -> str:
    accepted = {m.to for m in fake.accepted}
    if not fake.accepted and not in_flight:
        return "before the first request"
    if in_flight and all(email in accepted for email in in_flight):
        answered = sum(r.messages for r in fake.requests if r.status == 200)
        return "after the answer, before the commit" if answered >= len(accepted) else "inside the provider call"
    if in_flight:
        return "inside the provider call" if any(email in accepted for email in in_flight) else "before the request left"
    return "between batches"


def _trial(number: int, provider: str, workdir: Path, settings, env: dict[str, str], rng: random.Random) -> Trial:
    with FakeProviderAPI(provider, TEST_CREDENTIALS[provider]) as fake:
        fake.fail_next(*[Fault.slow(0.12)] * 200)  # every answer takes a while: kills often land mid-request
        run_env = {**env, "VERDICTS_PROVIDER": provider, "VERDICTS_PROVIDER_BASE_URL": fake.base_url, **TEST_ENV[provider]}
        (workdir / f"t{number}").mkdir()
        with session_scope(settings.database_url) as session:
            issue = seed_issue(session, workdir / f"t{number}", readers=0)
        kill_after = rng.uniform(1.0, 2.2)  # the CLI needs about a second to start
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)], env=run_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with session_scope(settings.database_url) as session:
            in_flight = [d.email for d in session.exec(select(Delivery).where(Delivery.status == DeliveryStatus.sending))]
        phase = _phase(fake, in_flight)
        resume = subprocess.run([sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)], env=run_env,
                                capture_output=True, text=True, timeout=120)
        assert resume.returncode == 0, resume.stderr
        copies = Counter(m.to for m in fake.accepted)
    expected = {f"reader{i}@example.com" for i in range(READERS)}
    reported = int(resume.stdout.split(" deliveries with unknown outcome re-sent")[0].rsplit(", ", 1)[-1]) \
        if "unknown outcome re-sent" in resume.stdout else 0
    return Trial(provider, kill_after, phase, len(expected - set(copies)), sum(n - 1 for n in copies.values()), reported)


def test_sigkill_at_random_moments_then_resume(workdir, settings, monkeypatch):
    rng = random.Random(20261127)
    env = {**os.environ, "VERDICTS_BATCH_SIZE": str(BATCH), "VERDICTS_PROVIDER_CONCURRENCY": "1"}
    trials = []
    for number in range(TRIALS):
        provider = "resend" if number % 2 else "postmark"
        # A fresh list for each trial (the issue of the week is unique): clear the previous trial's rows.
        with session_scope(settings.database_url) as session:
            for table in ("delivery_event", "vote", "delivery", "issue_item", "issue", "review", "tool", "comparison", "subscriber"):
                session.exec(sa.text(f"DELETE FROM {table}"))
        add_readers(settings.database_url, READERS)
        trials.append(_trial(number, provider, workdir, settings, env, rng))
    _write_report(trials, sa.make_url(settings.database_url).get_backend_name())
    for t in trials:
        assert t.lost == 0, t
        assert t.duplicates <= BATCH, t  # only the batch in flight at the kill
        assert t.duplicates <= t.reported, t  # and every possible duplicate was reported
        if t.provider == "resend":
            assert t.duplicates == 0, t
    assert len({t.phase for t in trials} & {"inside the provider call", "after the answer, before the commit"}) >= 1


def _write_report(trials: list[Trial], backend: str) -> None:
    lines = [
        f"## SIGKILL at random moments, then resume ({len(trials)} trials, {backend})",
        "",
        f"{READERS} readers, batches of {BATCH}, one request in flight, every provider answer delayed 0.12 s; "
        "`verdicts issue send` killed with SIGKILL after a random 1.0–2.2 s, then run again. "
        "Postmark has no idempotency: rows in flight at the kill are re-sent and reported "
        "(`AFTER_CRASH=resend`); Resend replays the same batch with the same Idempotency-Key.",
        "",
        "| # | provider | killed after | where the kill landed | readers lost | duplicates | reported as unknown, re-sent |",
        "|---|---|---|---|---|---|---|",
        *[f"| {i + 1} | {t.provider} | {t.kill_after:.2f} s | {t.phase} | {t.lost} | {t.duplicates} | {t.reported} |" for i, t in enumerate(trials)],
        "",
        f"Totals: readers lost **{sum(t.lost for t in trials)}**, duplicates **{sum(t.duplicates for t in trials)}** "
        f"(Resend: {sum(t.duplicates for t in trials if t.provider == 'resend')}), "
        f"reported re-sent with unknown outcome {sum(t.reported for t in trials)}.",
    ]
    write_reliability(f"sigkill-{backend}", "\n".join(lines))
