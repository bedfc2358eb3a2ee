"""The operator's long-running process: cron from config, coalescing, misfire grace, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import get_settings
from pipeline.errors import VerdictsError
from pipeline.schedule import build_scheduler

ROOT = Path(__file__).resolve().parent.parent


def test_job_follows_the_configured_cron_and_time_zone(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_SCHEDULE", "30 7 * * fri")
    monkeypatch.setenv("VERDICTS_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("VERDICTS_MISFIRE_GRACE_SECONDS", "900")
    get_settings.cache_clear()
    scheduler = build_scheduler(get_settings())
    job = scheduler.get_job("weekly")
    assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 900
    from datetime import datetime
    from zoneinfo import ZoneInfo

    nxt = job.trigger.get_next_fire_time(None, datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo("UTC")))
    assert (nxt.weekday(), nxt.hour, nxt.minute, str(nxt.tzinfo)) == (4, 7, 30, "Europe/Berlin")


def test_bad_cron_is_a_clear_error(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_SCHEDULE", "every monday")
    get_settings.cache_clear()
    with pytest.raises(VerdictsError, match="VERDICTS_SCHEDULE 'every monday' is not a cron expression"):
        build_scheduler(get_settings())


@pytest.mark.parametrize("entry", [["scheduler.py"], ["-m", "pipeline.cli", "scheduler"]])
def test_scheduler_process_logs_next_run_and_stops_on_sigterm(workdir, entry):
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


def test_a_run_missed_within_the_grace_happens_once_on_start(workdir, monkeypatch):
    from datetime import datetime, timezone

    monkeypatch.setenv("VERDICTS_SCHEDULE", "0 9 * * mon")
    get_settings.cache_clear()
    settings = get_settings()
    monday_0930 = datetime(2026, 11, 30, 9, 30, tzinfo=timezone.utc)
    jobs = {j.id for j in build_scheduler(settings, now=monday_0930).get_jobs()}
    assert jobs == {"weekly", "approved", "catch-up"}
    monday_1300 = datetime(2026, 11, 30, 13, 0, tzinfo=timezone.utc)  # beyond the 1 h grace: no surprise send
    assert {j.id for j in build_scheduler(settings, now=monday_1300).get_jobs()} == {"weekly", "approved"}
