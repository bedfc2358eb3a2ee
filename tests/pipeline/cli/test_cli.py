"""The operator's view: the issue lifecycle and run-weekly through the `verdicts` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from pipeline.config import Settings
from tests.conftest import NOW, comparison, days_ago, db_snapshot, write_json


def _content(verdicts, tmp_path, readers=3):
    path = write_json(tmp_path / "c.json", [comparison("a", days_ago(1)), comparison("b", days_ago(2))])
    assert verdicts("comparisons", "import", str(path)).code == 0
    for i in range(readers):
        assert verdicts("subscribers", "add", f"r{i}@example.com", "--confirmed").code == 0


def test_build_approve_send_show(verdicts, settings, tmp_path):
    _content(verdicts, tmp_path)
    assert verdicts("issue", "build", "--now", NOW.isoformat()).out.strip() == "1"
    refused = verdicts("issue", "send", "1")
    assert refused.code == 1 and "approve it first" in refused.err
    approved = " ".join(verdicts("issue", "approve", "1").out.split())
    assert "is approved" in approved and "A running scheduler (`verdicts scheduler`) sends it" in approved
    assert "to send it now: verdicts issue send 1" in approved
    sent = verdicts("issue", "send", "1")
    assert sent.code == 0 and "sent 3" in sent.out and "finished" in sent.out
    show = verdicts("issue", "show", "1").out
    assert "sent" in show and "queued 0, sent 3, failed 0" in show and "Alpha a vs Beta a" in show
    listing = verdicts("issue", "list").out
    assert "2026-W48" in listing and "sent" in listing
    for again in (verdicts("issue", "send", "1"), verdicts("issue", "send", "1", "--workers", "2")):
        assert again.code == 0 and "issue 1 was sent before, to its audience of 3: nothing to do" in again.out
    late = verdicts("issue", "edit", "1", "--subject", "Too late")
    assert (
        late.code == 1
        and "issue 1 is sent: what readers got cannot change any more" in late.err
        and "unapprove" not in late.err
    )


def test_run_weekly_waits_for_approval_then_sends_once(verdicts, settings, tmp_path):
    _content(verdicts, tmp_path)
    waiting = verdicts("run-weekly", "--now", NOW.isoformat())
    assert waiting.code == 0 and "Waiting for an editor" in waiting.out
    verdicts("issue", "approve", "1")
    first = verdicts("run-weekly", "--now", NOW.isoformat())
    assert "sent 3" in first.out
    second = verdicts("run-weekly", "--now", NOW.isoformat())
    assert second.code == 0 and "Nothing to send" in second.out
    assert len(list(settings.outbox_dir.rglob("0*.eml"))) == 3


def test_run_weekly_without_approval_when_configured(verdicts, settings, tmp_path, monkeypatch):
    _content(verdicts, tmp_path)
    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    result = verdicts("run-weekly", "--now", NOW.isoformat())
    assert result.code == 0 and "sent 3" in result.out


def test_preview_writes_html_and_prints_text(verdicts, settings, tmp_path):
    _content(verdicts, tmp_path)
    verdicts("issue", "build", "--now", NOW.isoformat())
    html = verdicts("issue", "preview", "1", "--out", "p.html")
    assert html.code == 0 and (tmp_path / "p.html").read_text().startswith("<!doctype html>")
    text = verdicts("issue", "preview", "1", "--text")
    # "Read the full comparison" goes through the click-counting redirect, which names the comparison by id.
    assert "Hi Reader," in text.out and "Read the full comparison: https://verdicts.example.com/r/1/" in text.out
    assert verdicts("issue", "preview", "1", "--text", "--out", "p.txt").code == 0
    assert (tmp_path / "p.txt").read_text().rstrip("\n") == text.out.rstrip("\n")


def test_preview_open_without_a_browser_says_where_the_file_is(verdicts, settings, tmp_path, monkeypatch):
    _content(verdicts, tmp_path)
    verdicts("issue", "build", "--now", NOW.isoformat())
    monkeypatch.setenv("BROWSER", "false")  # the only browser there is fails to start
    result = verdicts("issue", "preview", "1", "--open")
    assert (
        result.code == 0
        and f"No browser could be opened here: open {tmp_path / 'issue-1-preview.html'} yourself" in result.err
    )


def test_a_test_copy_that_could_not_be_sent_fails_the_command(verdicts, settings, tmp_path, monkeypatch):
    _content(verdicts, tmp_path)
    verdicts("issue", "build", "--now", NOW.isoformat())
    for name, value in {
        "PROVIDER": "postmark",
        "POSTMARK_SERVER_TOKEN": "pm",
        "PROVIDER_BASE_URL": "http://127.0.0.1:1",
        "PROVIDER_RETRY_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(f"VERDICTS_{name}", value)
    result = verdicts("issue", "test-send", "1", "--to", "ed@example.com")
    assert result.code == 1 and "ed@example.com: failed: postmark: no connection" in result.out


def test_unapproving_a_draft_says_nothing_changed(verdicts, settings, tmp_path):
    _content(verdicts, tmp_path)
    verdicts("issue", "build", "--now", NOW.isoformat())
    assert verdicts("issue", "unapprove", "1").out == "Issue 1 is a draft already: nothing changed.\n"
    assert verdicts("issue", "approve", "1").code == 0
    assert verdicts("issue", "unapprove", "1").out == "Issue 1 is a draft again.\n"


def test_unknown_issue_and_uninitialised_database_are_one_line_errors(verdicts, workdir, database_url):
    fresh = verdicts("issue", "show", "1")
    assert fresh.code == 3 and "run `verdicts init`" in fresh.err
    if database_url.startswith("sqlite"):  # a mistyped path is named, and no empty file is left behind
        path = sa.make_url(database_url).database
        assert f"there is no database at {path}" in fresh.err and not Path(path).exists()
    assert verdicts("init").code == 0
    assert verdicts("init").code == 0  # idempotent
    before = db_snapshot(database_url)
    for args in (
        ["issue", "show", "42"],
        ["issue", "approve", "42"],
        ["issue", "send", "42"],
        ["issue", "preview", "42"],
    ):
        result = verdicts(*args)
        assert (
            result.code == 4
            and result.err == "error: issue 42 does not exist: `verdicts issue list` shows the issues\n"
        )
    assert db_snapshot(database_url) == before


def test_bad_configuration_is_a_clear_error(verdicts, monkeypatch):
    monkeypatch.setenv("VERDICTS_TIMEZONE", "Mars/Olympus")
    result = verdicts("init")
    assert result.code == 3 and "unknown time zone 'Mars/Olympus'" in result.err
    monkeypatch.delenv("VERDICTS_TIMEZONE")
    # What a shell makes of an unquoted hash: "pbkdf2_sha256" and the expansions of $600000, $salt and $hash.
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD_HASH", "pbkdf2_sha256000")
    mangled = verdicts("serve")
    assert (
        mangled.code == 3
        and "VERDICTS_EDITOR_PASSWORD_HASH: not a hash from `verdicts editor hash-password`" in mangled.err
    )
    assert "single quotes" in mangled.err and "pbkdf2_sha256000" not in mangled.err
    monkeypatch.delenv("VERDICTS_EDITOR_PASSWORD_HASH")
    monkeypatch.setenv(
        "VERDICTS_PROVIDER_BASE_URL", "api.eu.mailgun.net"
    )  # httpx took it, then said "no answer" at the first send
    no_scheme = verdicts("providers", "check")
    assert (
        no_scheme.code == 3
        and "VERDICTS_PROVIDER_BASE_URL='api.eu.mailgun.net': must be an http:// or https:// address" in no_scheme.err
    )


def test_a_database_url_mistake_is_one_line_naming_the_setting_without_its_password(verdicts, monkeypatch):
    # Exit 3: fix the setting; exit 5: a server that did not answer (worth trying again).
    for url, says, code in (
        ("notaurl", "not a database URL", 3),
        ("mysql://me:s3cret@db.example.com/verdicts", "'mysql' database is not supported", 3),
        ("postgresql+psycopg://me:s3cret@127.0.0.1:1/verdicts", "port 1 failed", 5),
        ("sqlite:////no/such/folder/verdicts.db", "/no/such/folder/verdicts.db", 3),
        ("sqlite://verdicts.db", "a SQLite URL has three slashes", 3),
        ("postgresql://me:s3cret@w0rd@127.0.0.1:1/verdicts", "an '@' in the password is written %40", 3),
        (
            "postgresql+psycopg://me@127.0.0.1:1/verdicts?password=s3cret",
            "database postgresql+psycopg://127.0.0.1:1/verdicts:",
            5,
        ),
        ("postgresql+psycopg://me@127.0.0.1:port/verdicts", "not a database URL; use sqlite:///", 3),
    ):
        monkeypatch.setenv("VERDICTS_DATABASE_URL", url)
        for args in (["init"], ["issue", "list"]):
            result = verdicts(*args)
            assert result.code == code and says in result.err and "VERDICTS_DATABASE_URL" in result.err, (
                url,
                args,
                result.err,
            )
            assert result.err.count("\n") == 1 and "s3cret" not in result.err


def test_postgres_urls_as_hosting_platforms_give_them_work(verdicts, database_url, monkeypatch):
    """``postgres://`` and ``postgresql://`` mean PostgreSQL through psycopg 3, the driver installed."""
    assert Settings(database_url="postgres://me:pw@db:5432/v").database_url == "postgresql+psycopg://me:pw@db:5432/v"
    assert Settings(database_url="postgresql://me@db/v").database_url == "postgresql+psycopg://me@db/v"
    if database_url.startswith("postgresql+psycopg://"):
        monkeypatch.setenv("VERDICTS_DATABASE_URL", database_url.replace("postgresql+psycopg://", "postgres://", 1))
        assert verdicts("init").code == 0
        assert verdicts("issue", "list").code == 0


def test_console_script_is_installed(workdir):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True)
    for command in ("init", "demo", "comparisons", "subscribers", "issue", "run-weekly", "scheduler"):
        assert command in result.stdout


def test_future_now_is_refused(verdicts, settings):
    result = verdicts("issue", "build", "--now", "2099-06-01T09:00:00+02:00")
    assert result.code == 4 and "in the future" in result.err


def test_an_issue_failing_lint_stays_approved_with_nothing_frozen(verdicts, settings, tmp_path, monkeypatch):
    _content(verdicts, tmp_path)
    verdicts("issue", "build", "--now", NOW.isoformat())
    monkeypatch.setenv("VERDICTS_POSTAL_ADDRESS", "")
    refused = verdicts("issue", "approve", "1")
    assert refused.code == 1 and "postal address" in refused.err
    monkeypatch.delenv("VERDICTS_POSTAL_ADDRESS")
    verdicts("issue", "approve", "1")
    monkeypatch.setenv("VERDICTS_POSTAL_ADDRESS", "")
    failed = verdicts("issue", "send", "1")
    assert failed.code == 1 and "fails lint" in failed.err
    show = verdicts("issue", "show", "1").out
    assert "approved" in show and "queued 0, sent 0" in show
