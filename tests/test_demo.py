"""`make demo` on a fresh machine: a real `verdicts demo` process in an empty folder."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from email.policy import default


def _demo(workdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERDICTS_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_sends_this_weeks_issue_to_the_outbox_and_can_run_again(workdir):
    first = _demo(workdir)
    assert first.returncode == 0, first.stderr
    emails = sorted((workdir / "outbox").glob("*/*.eml"))
    assert len(emails) == 5 and "5 emails in" in first.stdout
    assert (workdir / "verdicts.db").exists() and "preview.html" in first.stdout
    preview = next((workdir / "outbox").glob("*/preview.html")).read_text()
    assert "Claude Haiku Open Weights vs Mistral Code" in preview and "2 more" in preview
    msg = email.message_from_bytes(emails[0].read_bytes(), policy=default)
    assert msg.get_content_type() == "multipart/alternative" and msg["List-Unsubscribe-Post"]
    assert msg["Subject"] == "Claude Haiku Open Weights vs Mistral Code + 4 more"
    again = _demo(workdir)
    assert again.returncode == 0 and "already exists (sent)" in again.stdout
    assert len(list((workdir / "outbox").glob("*/*.eml"))) == 5
