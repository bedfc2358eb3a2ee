"""`verdicts providers check` with a key that may send and nothing else: a warning naming what could
not be verified (exit 0), never mistaken for a wrong key (exit 1). Real HTTP against the fakes, which
refuse such keys as each provider documents."""

from __future__ import annotations

import pytest

from pipeline.errors import EXIT_CONFIGURATION
from tests.fakes.provider_api import SENDING_ONLY_ENV
from tests.pipeline.delivery.providers.conftest import new_issue, send

#: What each provider's warning says could not be checked.
UNVERIFIED = {
    "resend": "has Sending access only (Resend: restricted_api_key), so its domains could not be listed",
    "mailgun": "is a sending key of mg.example.com: the domain's state (active, DNS verified) could not be read",
    "ses": "may not call ses:GetAccount, so the sending quota and whether sending is enabled in eu-west-1 were not "
    "checked",
}
WRONG = {
    "resend": {"VERDICTS_RESEND_API_KEY": "re_wrong"},
    "mailgun": {"VERDICTS_MAILGUN_API_KEY": "key-wrong"},
    "ses": {"AWS_ACCESS_KEY_ID": "AKIDSENDONLY", "AWS_SECRET_ACCESS_KEY": "wrong-secret"},
}


@pytest.mark.parametrize("name", list(UNVERIFIED))
def test_a_sending_only_key_is_a_warning_and_it_sends(api, workdir, verdicts, monkeypatch, name):
    fake, settings = api(name, **SENDING_ONLY_ENV[name])
    result = verdicts("providers", "check")
    assert result.code == 0, result.err
    assert f"{name}: ok — the {name} credentials are accepted for sending only" in result.out
    assert f"warning: {name}: " in result.err and UNVERIFIED[name] in result.err and "refused" not in result.err
    assert fake.accepted == []  # the check sent nothing, probe included
    # "Sending should work" is true: the same key sends a whole issue.
    issue = new_issue(settings, workdir, 3)
    summary = send(settings, issue.id)
    assert summary.finished and summary.sent == 3 and len(fake.accepted) == 3


@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_key_stays_a_credential_error(api, verdicts, name):
    fake, _ = api(name, **WRONG[name])
    result = verdicts("providers", "check")
    assert result.code == EXIT_CONFIGURATION and f"{name} refused the request" in result.err
    assert "warning" not in result.err
    assert fake.accepted == []


def test_mailgun_tells_a_sending_key_from_a_wrong_one_by_a_send_that_cannot_go(api, verdicts):
    """Mailgun answers both with 401 on the domain read; only the messages endpoint knows a sending key."""
    fake, _ = api("mailgun", **SENDING_ONLY_ENV["mailgun"])
    assert verdicts("providers", "check").code == 0
    assert [(r.method, r.path, r.status) for r in fake.requests] == [
        ("GET", "/v3/domains/mg.example.com", 401),
        ("POST", "/v3/mg.example.com/messages", 400),
    ]
    assert fake.accepted == []


def test_sendgrid_lists_the_scopes_of_a_restricted_key(api, verdicts, monkeypatch):
    fake, _ = api("sendgrid", **SENDING_ONLY_ENV["sendgrid"])
    result = verdicts("providers", "check")
    assert result.code == 0 and "SendGrid key works, restricted to mail.send (all that sending needs)" in result.out
    assert "warning" not in result.err
    # A genuine key without mail.send would have every send refused: an error, with the fix.
    monkeypatch.setenv("VERDICTS_SENDGRID_API_KEY", "SG.stats-only")
    result = verdicts("providers", "check")
    assert result.code == EXIT_CONFIGURATION
    assert "lacks the mail.send scope" in result.err and "Mail Send access" in result.err
    assert fake.accepted == []
