"""Exit codes by kind of failure, through the real `verdicts` entry point: a script or a service manager
tells "fix the configuration" from "bad input" from "try again later" without reading the message."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.errors import EXIT_BAD_DATA, EXIT_CONFIGURATION, EXIT_FAILURE, EXIT_TEMPORARY, EXIT_USAGE
from tests.conftest import seed_issue, write_json

UNREACHABLE = "postgresql+psycopg://verdicts@127.0.0.1:1/verdicts"


def test_a_command_used_wrongly_exits_2(verdicts):
    assert verdicts("issue", "send").code == EXIT_USAGE  # the issue id is missing
    assert verdicts("issue", "list", "--no-such-option").code == EXIT_USAGE


def test_configuration_and_set_up_problems_exit_3(verdicts, monkeypatch):
    no_database = verdicts("issue", "list")
    assert no_database.code == EXIT_CONFIGURATION and "run `verdicts init`" in no_database.err
    assert verdicts("init").code == 0
    monkeypatch.setenv("VERDICTS_SCHEDULE", "every monday")
    bad_cron = verdicts("scheduler")
    assert bad_cron.code == EXIT_CONFIGURATION
    assert "VERDICTS_SCHEDULE 'every monday' is not a cron expression" in bad_cron.err
    monkeypatch.setenv("VERDICTS_PROVIDER", "postmark")  # without its token
    no_credential = verdicts("issue", "send", "1")
    assert no_credential.code == EXIT_CONFIGURATION and "VERDICTS_POSTMARK_SERVER_TOKEN" in no_credential.err


def test_bad_input_exits_4(verdicts, settings, workdir):
    bad = write_json(workdir / "bad.json", [{"slug": "Not A Slug"}])
    assert verdicts("comparisons", "import", str(bad)).code == EXIT_BAD_DATA
    assert verdicts("issue", "show", "42").code == EXIT_BAD_DATA
    assert verdicts("issue", "build", "--now", "yesterday").code == EXIT_BAD_DATA


def test_a_database_that_does_not_answer_exits_5_so_the_same_command_can_be_tried_again(workdir):
    env = {**os.environ, "VERDICTS_DATABASE_URL": UNREACHABLE}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "issue", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_TEMPORARY and done.stderr.startswith("error: cannot open the database"), done.stderr


def test_other_failures_exit_1(verdicts, session, settings, workdir):
    issue = seed_issue(session, workdir, readers=1)
    send_issue(settings, issue.id, OutboxProvider(settings))
    late = verdicts("issue", "approve", str(issue.id))
    assert late.code == EXIT_FAILURE and "is sent" in late.err
