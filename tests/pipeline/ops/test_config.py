"""`verdicts config show | check | example`, and the secret-key rule of the commands that serve or send."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from pipeline.cli.config import env_example
from pipeline.config import Settings, get_settings
from pipeline.errors import EXIT_CONFIGURATION
from pipeline.secret_key import DEV_SECRET_KEY, InsecureSecret
from pipeline.store.db import session_scope
from subscribers.service import add_subscriber
from subscribers.tokens import PREFERENCES, make_token
from tests.conftest import db_snapshot, seed_issue

ROOT = Path(__file__).resolve().parents[3]
STRONG = "k" * 32
REAL_SITE = "https://news.verdicts.test"


def rows(output: str) -> dict[str, tuple[str, str]]:
    """`config show` away from a terminal (as the tests run it, and as under `systemd-run --pipe`): one setting a
    line, tab-separated, values whole. Setting → (value, source)."""
    found = {}
    for line in output.splitlines():
        cells = line.split("\t")
        if len(cells) == 3 and cells[0].startswith("VERDICTS_"):
            found[cells[0]] = (cells[1], cells[2])
    return found


# --- the secret key -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "development"),
    [
        ("http://localhost:8000", True),
        ("http://127.0.0.1:8000", True),
        ("http://[::1]:8000", True),
        ("https://example.com", True),
        ("https://verdicts.example.com", True),
        ("https://EXAMPLE.COM/path", True),
        ("https://myexample.com", False),  # ended in example.com: passed as a development host
        ("https://example.com.evil.org", False),
        ("https://localhost.evil.org", False),
        ("https://127.0.0.1.nip.io", False),
        ("https://news.verdicts.test", False),
        ("http://192.168.1.5:8000", False),
    ],
)
@pytest.mark.parametrize(
    ("key", "weakness"),
    [
        (DEV_SECRET_KEY, "is the development key"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("x" * 31, "is 31 bytes long, fewer than 32"),
        ("x" * 32, None),
        ("é" * 16, None),  # bytes, not characters
    ],
)
def test_the_secret_key_rule(workdir, base_url, development, key, weakness):
    settings = Settings(base_url=base_url, secret_key=key)
    if weakness is None or development:
        settings.require_real_secret()
        return
    with pytest.raises(InsecureSecret) as refused:
        settings.require_real_secret()
    assert str(refused.value).startswith(f"VERDICTS_SECRET_KEY {weakness}")
    assert "token_urlsafe(32)" in str(refused.value)
    assert not key.strip() or key not in str(refused.value)  # the weak key itself is never printed


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "{port}"], ["scheduler"], ["issue", "send", "{issue}"], ["run-weekly"]],
    ids=["serve", "scheduler", "issue-send", "run-weekly"],
)
def test_each_command_that_serves_or_sends_refuses_an_empty_key_on_a_real_site(settings, workdir, monkeypatch, command):
    """As real processes: a refusal that failed would serve or send (a timeout here), not just print."""
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=3)
    monkeypatch.setenv("VERDICTS_BASE_URL", REAL_SITE)
    monkeypatch.setenv("VERDICTS_SECRET_KEY", "")
    before = db_snapshot(settings.database_url)
    args = [a.format(port=_free_port(), issue=issue.id) for a in command]
    done = _run(args)
    assert done.returncode == EXIT_CONFIGURATION, done.stderr
    assert f"error: VERDICTS_SECRET_KEY is empty: anyone could forge the links of {REAL_SITE}" in done.stderr
    assert db_snapshot(settings.database_url) == before
    assert not list(workdir.glob("outbox/**/*.eml"))


def test_a_weak_key_stops_issue_send_and_run_weekly_before_anything_changes(settings, workdir, verdicts, monkeypatch):
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=3)
    monkeypatch.setenv("VERDICTS_BASE_URL", REAL_SITE)
    before = db_snapshot(settings.database_url)
    weak = [("short-but-not-empty", "is 19 bytes long, fewer than 32"), (DEV_SECRET_KEY, "is the development key")]
    for key, says in weak:
        monkeypatch.setenv("VERDICTS_SECRET_KEY", key)
        for args in (["issue", "send", str(issue.id)], ["run-weekly"]):
            result = verdicts(*args)
            assert result.code == EXIT_CONFIGURATION and f"VERDICTS_SECRET_KEY {says}" in result.err, (key, args)
    assert db_snapshot(settings.database_url) == before
    monkeypatch.setenv("VERDICTS_SECRET_KEY", STRONG)  # the same site with a real key sends
    assert verdicts("issue", "send", str(issue.id)).code == 0
    assert len(list(workdir.glob("outbox/**/*.eml"))) == 3


def test_a_preferences_link_forged_with_an_empty_key_finds_no_server(settings, workdir, monkeypatch):
    """The reviewer's attack: with an empty key, anyone can sign a reader's id from the public source."""
    with session_scope(settings.database_url) as session:
        reader = add_subscriber(session, "ada@example.org", "Ada", confirmed=True).subscriber
    forged = f"/preferences/{make_token('', PREFERENCES, reader.id)}/data.json"
    monkeypatch.setenv("VERDICTS_BASE_URL", REAL_SITE)
    monkeypatch.setenv("VERDICTS_SECRET_KEY", "")
    get_settings.cache_clear()
    unsafe = get_settings()

    from pipeline.web.app import create_app

    # The forgery is real: an app that started with this key would hand the reader's data to anyone. So the
    # app cannot be made with it, however it is started (`serve`, its workers, a bare `uvicorn --factory`)…
    with pytest.raises(InsecureSecret, match="VERDICTS_SECRET_KEY is empty"):
        create_app(unsafe)
    # …and nothing answers the link.
    port = _free_port()
    done = _run(["serve", "--port", str(port)])
    assert done.returncode == EXIT_CONFIGURATION and "VERDICTS_SECRET_KEY is empty" in done.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}{forged}", timeout=5)
    # With a real key the same link is refused, and nobody can forge one without that key.
    safe = unsafe.model_copy(update={"secret_key": SecretStr(STRONG)})
    with TestClient(create_app(safe), base_url=REAL_SITE) as client:
        refused = client.get(forged)
    assert refused.status_code == 400 and "ada@example.org" not in refused.text


# --- config show ----------------------------------------------------------------------------------


def test_config_show_says_where_each_value_came_from_and_masks_secrets(workdir, verdicts, monkeypatch):
    (workdir / ".env").write_text(
        "VERDICTS_SCHEDULE='0 8 * * tue'\n"
        "VERDICTS_PROVIDER=resend\n"  # the environment wins over the file
        f"VERDICTS_SECRET_KEY={'s3cr3t-' * 6}\n"
        "VERDICTS_MAX_COMPARISONS=99\n",
        encoding="utf-8",
    )
    monkeypatch.delenv("VERDICTS_SECRET_KEY")
    monkeypatch.setenv("VERDICTS_PROVIDER", "postmark")
    monkeypatch.setenv("VERDICTS_POSTMARK_SERVER_TOKEN", "pm-token-value")
    monkeypatch.setenv("VERDICTS_POSTMARK_WEBHOOK_AUTH", "hooks:hook-password")
    monkeypatch.setenv("VERDICTS_DATABASE_URL", "postgresql://verdicts:db-password@db.internal:5432/verdicts")
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD_HASH", "pbkdf2_sha256$600000$c2FsdA==$" + "A" * 43 + "=")
    result = verdicts("config", "show")
    assert result.code == 0, result.err
    table = rows(result.out)
    assert set(table) == {f"VERDICTS_{name.upper()}" for name in Settings.model_fields}
    assert table["VERDICTS_SCHEDULE"] == ("0 8 * * tue", ".env")
    assert table["VERDICTS_PROVIDER"] == ("postmark", "environment")
    assert table["VERDICTS_TIMEZONE"] == ("UTC", "default")
    assert table["VERDICTS_SECRET_KEY"] == ("********", ".env")
    assert table["VERDICTS_POSTMARK_SERVER_TOKEN"] == ("********", "environment")
    assert table["VERDICTS_EDITOR_PASSWORD_HASH"] == ("********", "environment")
    masked = "postgresql+psycopg://verdicts:***@db.internal:5432/verdicts"
    assert table["VERDICTS_DATABASE_URL"] == (masked, "environment")
    assert table["VERDICTS_MAX_COMPARISONS"] == ("99 (invalid: see `verdicts config check`)", ".env")
    assert table["VERDICTS_FALLBACK_PROVIDER"] == ("(not set)", "default")
    for secret in ("s3cr3t", "pm-token-value", "hook-password", "db-password", "pbkdf2"):
        assert secret not in result.out + result.err


# --- config check ---------------------------------------------------------------------------------


def test_config_check_lists_every_problem_at_once_with_its_fix(settings, workdir, verdicts, monkeypatch):
    for name, value in {
        "MAX_COMPARISONS": "99",
        "TIMEZONE": "Mars/Olympus",
        "BASE_URL": REAL_SITE,
        "SECRET_KEY": "",
        "PROVIDER": "postmark",
        "TEMPLATES_DIR": str(workdir / "no-such-folder"),
        "VOTES_WEBHOOK_URL": "https://site.verdicts.test/hooks/votes",
        "DKIM_SELECTOR": "s1._domainkey.x.org",
        "FROM_EMAIL": "news@example.org",
        "POSTAL_ADDRESS": "1 Main St, Springfield",
    }.items():
        monkeypatch.setenv(f"VERDICTS_{name}", value)
    result = verdicts("config", "check", "--no-dns")
    assert result.code == EXIT_CONFIGURATION
    errors = [line for line in result.out.splitlines() if line.startswith("error: ")]
    expected = [
        "VERDICTS_MAX_COMPARISONS='99': Input should be less than or equal to 50",
        "VERDICTS_TIMEZONE='Mars/Olympus': unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Berlin",
        "VERDICTS_VOTES_WEBHOOK_URL='https://site.verdicts.test/hooks/votes': needs VERDICTS_VOTES_WEBHOOK_SECRET",
        "VERDICTS_DKIM_SELECTOR='s1._domainkey.x.org': 's1._domainkey.x.org' is not a DKIM selector",
        f"VERDICTS_SECRET_KEY is empty: anyone could forge the links of {REAL_SITE}",
        "the postmark provider needs VERDICTS_POSTMARK_SERVER_TOKEN",
        f"VERDICTS_TEMPLATES_DIR={workdir / 'no-such-folder'} is not a folder",
    ]
    for says in expected:
        assert sum(says in line for line in errors) == 1, (says, errors)
    assert len(errors) == len(expected), errors
    assert "warning: VERDICTS_POSTMARK_WEBHOOK_AUTH: not set" in result.out
    # The List-Id every email carries still names the example site: mail filters sort by it.
    assert "warning: VERDICTS_LIST_ID: is weekly.verdicts.example.com" in result.out
    assert result.err.startswith(f"error: {len(expected)} error(s), ")


def test_config_check_with_warnings_only_passes(settings, verdicts):
    """The demo's configuration: the development key on example.com is fine there, and said to be."""
    result = verdicts("config", "check")
    assert result.code == 0, result.out + result.err
    assert (
        "warning: VERDICTS_SECRET_KEY: is 11 bytes long, fewer than 32: fine while VERDICTS_BASE_URL is "
        "https://verdicts.example.com" in result.out
    )
    assert "note: DNS: VERDICTS_PROVIDER is outbox" in result.out
    assert "0 error(s), 1 warning(s)" in result.out


def test_config_check_before_init_says_to_run_it(workdir, verdicts, monkeypatch):
    monkeypatch.setenv("VERDICTS_SECRET_KEY", STRONG)
    result = verdicts("config", "check")
    assert result.code == 0 and "warning: database: " in result.out and "`verdicts init`" in result.out


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        *[
            ("LIST_ID", bad, "must be a list name and a domain joined by dots, in ASCII")
            for bad in ("Weekly Verdicts <weekly.example.org>", "weekly", "wöchentlich.example.org", "a,b.example.org")
        ],
        ("FROM_NAME", "Weekly\tVerdicts", "must be one line without control characters"),
        ("FROM_NAME", "=?utf-8?q?Weekly?=", "must not contain '=?'"),
    ],
)
def test_a_header_setting_that_can_never_be_sent_is_refused_naming_value_and_fix(
    workdir, verdicts, monkeypatch, name, value, says
):
    """Checked when the settings load: otherwise the provider (or every reader's mail filter) refuses it later."""
    monkeypatch.setenv(f"VERDICTS_{name}", value)
    result = verdicts("config", "check", "--no-dns")
    assert result.code == EXIT_CONFIGURATION
    assert f"error: VERDICTS_{name}={value!r}: {says}" in result.out, result.out
    assert "e.g. weekly.example.org" in result.out or name != "LIST_ID"


def test_the_sender_name_is_kept_as_readers_see_it():
    """Runs of spaces would collapse in any header parser; anything else a person types goes out (encoded)."""
    assert Settings(_env_file=None, from_name="  Les   Verdicts —\u00a0édition ").from_name == "Les Verdicts — édition"


def test_config_check_warns_of_a_placeholder_unsubscribe_mailbox_and_not_when_unset(workdir, verdicts, monkeypatch):
    """Readers whose mail client unsubscribes by mail would write to nobody: only a mailbox that is processed."""
    for name, value in {
        "PROVIDER": "postmark",
        "POSTMARK_SERVER_TOKEN": "pm-test",
        "BASE_URL": REAL_SITE,
        "SECRET_KEY": STRONG,
        "FROM_EMAIL": "news@verdicts.test",
    }.items():
        monkeypatch.setenv(f"VERDICTS_{name}", value)
    assert "VERDICTS_UNSUBSCRIBE_MAILTO" not in verdicts("config", "check", "--no-dns").out
    monkeypatch.setenv("VERDICTS_UNSUBSCRIBE_MAILTO", "unsubscribe@verdicts.example.com")
    out = verdicts("config", "check", "--no-dns").out
    assert (
        "warning: VERDICTS_UNSUBSCRIBE_MAILTO: is unsubscribe@verdicts.example.com: readers whose mail client "
        "unsubscribes through it would write to a mailbox nobody reads and stay subscribed"
    ) in out, out


# --- .env.example ---------------------------------------------------------------------------------


def test_env_example_is_the_settings_model_as_generated(verdicts):
    committed = (ROOT / "deploy" / ".env.example").read_text(encoding="utf-8")
    assert committed == env_example(), "out of date: run `verdicts config example > deploy/.env.example`"
    assert verdicts("config", "example").out == committed


def test_env_example_lists_every_setting_with_its_default_and_reads_back_as_the_defaults(workdir):
    text = env_example()
    assignments = [line for line in text.splitlines() if line.startswith("#VERDICTS_")]
    assert [line.partition("=")[0][len("#VERDICTS_") :].lower() for line in assignments] == list(Settings.model_fields)
    assert "#VERDICTS_SECRET_KEY=\n" in text and DEV_SECRET_KEY not in text
    assert "# Signs every link in every email" in text
    # Nothing is set as written; uncommented, each default reads back as itself (quotes, #, spaces and all).
    assert Settings(_env_file=None) == Settings(_env_file=_written(workdir, text))
    given = "\n".join(line[1:] for line in assignments if not line.endswith("="))
    from_file = Settings(_env_file=_written(workdir, given))
    assert from_file.model_dump() == Settings(_env_file=None).model_dump()
    assert from_file.postal_address.endswith("548 Market St #12345, San Francisco, CA 94104, USA")


def _written(folder: Path, text: str) -> Path:
    path = folder / "example.env"
    path.write_text(text, encoding="utf-8")
    return path
