"""The command line's shared pieces: what loading them costs, and the provider check of the primary
and the fallback."""

from __future__ import annotations

import subprocess
import sys

from tests.fakes.provider_api import TEST_CREDENTIALS, TEST_ENV, FakeProviderAPI


def test_the_console_loads_no_part_of_the_send():
    """Every command imports the console; `config show` or `subscribers list` must not pay for the send loop
    and its providers. A fresh interpreter, so nothing imported before by the suite hides it."""
    code = "import sys, pipeline.cli.console; print([m for m in sys.modules if m.startswith('pipeline.delivery')])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_providers_check_calls_the_primary_then_the_fallback_once_each(verdicts, monkeypatch):
    primary = FakeProviderAPI("postmark", TEST_CREDENTIALS["postmark"])
    fallback = FakeProviderAPI("resend", TEST_CREDENTIALS["resend"])
    try:
        for key, value in {
            **TEST_ENV["postmark"],
            **TEST_ENV["resend"],
            "VERDICTS_PROVIDER": "postmark",
            "VERDICTS_PROVIDER_BASE_URL": primary.base_url,
            "VERDICTS_FALLBACK_PROVIDER": "resend",
            "VERDICTS_FALLBACK_BASE_URL": fallback.base_url,
        }.items():
            monkeypatch.setenv(key, value)
        both = verdicts("providers", "check")
        monkeypatch.setenv("VERDICTS_FALLBACK_PROVIDER", "postmark")  # the same one again: checked once
        same = verdicts("providers", "check")
    finally:
        primary.close()
        fallback.close()
    assert both.code == 0, both.err
    assert [line.split(":")[0] for line in both.out.splitlines()] == ["postmark", "resend"]
    assert same.code == 0 and [line.split(":")[0] for line in same.out.splitlines()] == ["postmark"]
    assert [r.method for r in primary.requests] == ["GET", "GET"] and [r.method for r in fallback.requests] == ["GET"]
    assert primary.accepted == [] and fallback.accepted == []
