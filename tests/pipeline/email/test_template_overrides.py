"""VERDICTS_TEMPLATES_DIR: a site replaces single templates by name; a broken override stops every command at start."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from email.policy import default
from pathlib import Path

import pytest

from pipeline.email.render import TEMPLATES_DIR

FOOTER = "email/partials/_footer.mjml.j2"


@pytest.fixture
def overrides(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty override folder that the settings point at (set before any settings are read)."""
    folder = workdir / "site-templates"
    folder.mkdir()
    monkeypatch.setenv("VERDICTS_TEMPLATES_DIR", str(folder))
    return folder


def _override(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _shipped(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def test_one_replaced_partial_changes_the_sent_email_and_the_rest_stay_shipped(overrides, verdicts):
    # What a site does: copy the shipped footer, change one line, keep it in a folder of its own.
    _override(overrides, FOOTER, _shipped(FOOTER).replace(">Preferences</a>", ">Your reading settings</a>"))
    result = verdicts("demo")
    assert result.code == 0, result.err
    emails = sorted((overrides.parent / "outbox").glob("*/*.eml"))
    assert len(emails) == 5
    html = email.message_from_bytes(emails[0].read_bytes(), policy=default).get_body(("html",)).get_content()
    assert "Your reading settings</a>" in html and ">Preferences</a>" not in html
    # The header, the cards and the text twin still come from the shipped templates.
    assert "Claude Haiku Open Weights vs Mistral Code" in html and "Unsubscribe</a>" in html
    assert os.listdir(overrides) == ["email"]  # nothing was written into the site's folder


def test_a_replaced_web_page_is_served_and_other_pages_are_shipped(overrides, client):
    page = _shipped("web/subscribe.html.j2").replace("Get the next comparison in your inbox.", "Join our readers.")
    _override(overrides, "web/subscribe.html.j2", page)
    subscribe = client.get("/subscribe")
    assert subscribe.status_code == 200 and "Join our readers." in subscribe.text
    assert "Get the next comparison in your inbox." not in subscribe.text
    assert "<!doctype html>" in subscribe.text.lower()  # the shipped base.html.j2 it extends


def _refused(result, *needles: str) -> None:
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: VERDICTS_TEMPLATES_DIR"), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_missing_override_folder_is_refused_before_anything_is_written(workdir, monkeypatch, verdicts):
    monkeypatch.setenv("VERDICTS_TEMPLATES_DIR", str(workdir / "no-such-folder"))
    _refused(verdicts("demo"), str(workdir / "no-such-folder"), "is not a folder", "unset VERDICTS_TEMPLATES_DIR")
    assert not (workdir / "verdicts.db").exists() and not (workdir / "outbox").exists()


def test_a_misspelt_override_would_be_ignored_so_it_is_refused_with_the_name_it_meant(overrides, verdicts):
    typo = _override(overrides, "email/partials/_fotter.mjml.j2", _shipped(FOOTER))
    _refused(verdicts("init"), str(typo), "replaces no shipped template", f"did you mean {FOOTER}?")
    assert not (overrides.parent / "verdicts.db").exists()


def test_a_file_beside_the_templates_is_refused_too(overrides, verdicts):
    notes = _override(overrides, "README.txt", "our changes")
    _refused(verdicts("init"), str(notes), "replaces no shipped template")


def test_hidden_files_and_an_empty_folder_are_fine(overrides, verdicts):
    _override(overrides, ".git/config", "[core]")
    _override(overrides, "email/.footer.swp", "")
    assert verdicts("init").code == 0


def test_an_override_jinja_cannot_parse_is_refused_with_its_line(overrides, verdicts):
    broken = _override(overrides, FOOTER, "<mj-section>\n{% if web %}\n  unclosed\n</mj-section>\n")
    _refused(verdicts("init"), str(broken), "line ", "fix it, or remove it")


def test_an_unknown_filter_is_refused_at_start_not_at_send_time(overrides, verdicts):
    broken = _override(overrides, FOOTER, "{{ footer.reason | shout }}\n")
    _refused(verdicts("init"), str(broken), "line 1", "shout")


@pytest.mark.parametrize("command", [["serve"], ["scheduler"], ["issue", "list"]])
def test_serve_the_scheduler_and_issue_commands_refuse_to_start(overrides, database_url, command):
    broken = _override(overrides, "web/base.html.j2", "{% block content %}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERDICTS_")}
    # A real key and a real site: only the override may stop them.
    env |= {
        "VERDICTS_TEMPLATES_DIR": str(overrides),
        "VERDICTS_DATABASE_URL": database_url,
        "VERDICTS_SECRET_KEY": "k" * 48,
        "VERDICTS_BASE_URL": "https://news.verdicts.test",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *command],
        cwd=overrides.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and str(broken) in done.stderr, done.stderr
