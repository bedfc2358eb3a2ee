"""VERDICTS_LOG_FORMAT=json: one JSON object a line from the scheduler, `serve` (uvicorn's own lines too) and the
CLI, with the issue and delivery ids; the links readers click never reach a log readable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import httpx

from pipeline.config import get_settings
from pipeline.errors import EXIT_BAD_DATA
from pipeline.logs import mask_tokens
from pipeline.store.db import session_scope
from pipeline.store.models import utcnow
from subscribers.service import add_subscriber
from subscribers.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_timed_token, make_token
from tests.conftest import seed_issue, wait_until_serving
from tests.test_scheduler import Child, _cron_at, _down_since, _seed

FIELDS = ["time", "level", "logger", "message"]


def _records(output: str) -> list[dict]:
    """Every line, as JSON: a line that is not is a failure."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_the_scheduler_logs_one_json_object_a_line_with_the_issue_id(workdir, session, monkeypatch):
    _seed(session, workdir, readers=3)
    monkeypatch.setenv("VERDICTS_LOG_FORMAT", "json")
    monkeypatch.setenv("VERDICTS_SCHEDULE", _cron_at(utcnow() - timedelta(minutes=1)))
    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    _down_since(utcnow() - timedelta(hours=1))
    scheduler = Child("scheduler")
    scheduler.wait_for('"finished": true')
    assert scheduler.finish(stop=True) == 0, scheduler.log
    records = _records(scheduler.log)
    assert all(list(r)[:4] == FIELDS for r in records), records
    assert all(r["time"].endswith("+00:00") for r in records) and "color_message" not in scheduler.log
    [summary] = [r for r in records if r["logger"] == "pipeline.delivery.send" and " sent " in r["message"]]
    assert summary["level"] == "INFO" and summary["sent"] == 3 and summary["finished"] is True
    assert summary["message"].startswith(f"issue {summary['issue_id']}: sent 3,")
    assert any(r["level"] == "WARNING" and r["message"].startswith("received SIGTERM") for r in records)


def test_debug_logs_name_each_batch_and_its_deliveries(workdir, session, monkeypatch):
    issue = seed_issue(session, workdir, readers=5)
    env = {**os.environ, "VERDICTS_LOG_FORMAT": "json", "VERDICTS_LOG_LEVEL": "DEBUG", "VERDICTS_BATCH_SIZE": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # stderr also carries the command's own progress lines ("Issue 1: 2/5"): those are its output, not log lines.
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    batches = [r for r in records if "a batch of" in r["message"]]
    assert [len(b["delivery_ids"]) for b in batches] == [2, 2, 1] and all(b["issue_id"] == issue.id for b in batches)
    assert sorted(i for b in batches for i in b["delivery_ids"]) == list(range(1, 6))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_logs_json_with_uvicorn_lines_and_masks_reader_tokens(workdir, monkeypatch):
    init = subprocess.run([sys.executable, "-m", "pipeline.cli", "init"], env=os.environ, capture_output=True)
    assert init.returncode == 0
    secret = get_settings().secret_key.get_secret_value()
    with session_scope(get_settings().database_url) as session:
        reader_id = add_subscriber(session, "reader@example.com", "R", confirmed=True).subscriber.id
    tokens = [
        make_token(secret, UNSUBSCRIBE, reader_id),
        make_token(secret, PREFERENCES, reader_id),
        make_timed_token(secret, CONFIRM, reader_id),
    ]
    port = _free_port()
    env = {
        **os.environ,
        "VERDICTS_LOG_FORMAT": "json",
        "VERDICTS_LOG_LEVEL": "INFO",
        "VERDICTS_BASE_URL": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server, 30, lambda: "")
        for path in (f"/unsubscribe/{tokens[0]}", f"/preferences/{tokens[1]}", f"/confirm/{tokens[2]}"):
            assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code in (200, 404)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    records = _records(output)
    assert all(list(r)[:4] == FIELDS for r in records), output
    assert any(r["logger"] == "uvicorn.error" and "Started server process" in r["message"] for r in records), output
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert {(r["method"], r["path"], r["status"]) for r in access} >= {
        ("GET", "/healthz", 200),
        ("GET", "/unsubscribe/***", 200),
        ("GET", "/preferences/***", 200),
    }
    assert not any(token in output for token in tokens)


def test_an_unhandled_error_on_a_readers_link_logs_the_path_with_its_token_masked(settings, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    from pipeline.web.app import create_app
    from subscribers import lookup

    with session_scope(settings.database_url) as session:
        reader_id = add_subscriber(session, "reader@example.com", "R", confirmed=True).subscriber.id
    token = make_token(settings.secret_key.get_secret_value(), PREFERENCES, reader_id)

    def broken(*_args):
        raise RuntimeError("the database went away mid-request")

    monkeypatch.setattr(lookup, "get_subscriber", broken)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get(f"/preferences/{token}").status_code == 500
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert line == "unhandled error on GET /preferences/***" and token not in caplog.text


def test_masking_keeps_what_is_not_a_token():
    assert mask_tokens("/issues/2026-W48") == "/issues/2026-W48"
    assert mask_tokens("/vote/12.34.0123456789abcdef0123456789abcdef/5/ship") == "/vote/***/5/ship"
    assert mask_tokens("/editor/issues/3?width=375") == "/editor/issues/3?width=375"


def test_a_command_that_fails_says_so_in_json_too(verdicts, monkeypatch, settings):
    monkeypatch.setenv("VERDICTS_LOG_FORMAT", "json")
    result = verdicts("issue", "show", "42")
    assert result.code == EXIT_BAD_DATA
    [record] = _records(result.err)
    assert record["level"] == "ERROR" and record["message"].startswith("error: issue 42 does not exist")
    assert record["exit_code"] == EXIT_BAD_DATA
