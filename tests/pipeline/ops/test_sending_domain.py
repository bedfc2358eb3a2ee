"""SPF, DKIM and DMARC of the sending domain, looked up with dnspython in a DNS server on loopback that
answers from the records each test publishes (tests/fakes/dns_server.py)."""

from __future__ import annotations

import time

import pytest

from pipeline.config import Settings
from pipeline.errors import EXIT_CONFIGURATION
from pipeline.ops.dns_records import Lookup
from pipeline.ops.sending_domain import check_sending_domain
from tests.fakes.dns_server import FakeDNS

DOMAIN = "news.example.org"  # reserved (RFC 2606), so never a real domain; only example.com is skipped as a placeholder
KEY = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC" + "A" * 150
DMARC = {(f"_dmarc.{DOMAIN}", "TXT"): [f"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}"]}
#: What each provider's documentation has you publish for DOMAIN.
PUBLISHED = {
    "resend": {
        (f"send.{DOMAIN}", "TXT"): ["v=spf1 include:amazonses.com ~all"],
        (f"send.{DOMAIN}", "MX"): ["10 feedback-smtp.us-east-1.amazonses.com."],
        (f"resend._domainkey.{DOMAIN}", "TXT"): [KEY],
    },
    "postmark": {
        (f"pm-bounces.{DOMAIN}", "CNAME"): ["pm.mtasv.net"],
        ("pm.mtasv.net", "TXT"): ["v=spf1 a mx ~all"],
        (f"20240101120000pm._domainkey.{DOMAIN}", "TXT"): [KEY],
    },
    "sendgrid": {
        (f"em1234.{DOMAIN}", "CNAME"): ["u1234.wl.sendgrid.net"],
        (f"s1._domainkey.{DOMAIN}", "CNAME"): ["s1.domainkey.u1234.wl.sendgrid.net"],
        (f"s2._domainkey.{DOMAIN}", "CNAME"): ["s2.domainkey.u1234.wl.sendgrid.net"],
        ("s1.domainkey.u1234.wl.sendgrid.net", "TXT"): [KEY],
        ("s2.domainkey.u1234.wl.sendgrid.net", "TXT"): [KEY],
    },
    "mailgun": {
        (f"mg.{DOMAIN}", "TXT"): ["v=spf1 include:mailgun.org ~all"],
        (f"pic._domainkey.mg.{DOMAIN}", "TXT"): [KEY],
    },
    "ses": {
        **{(f"tok{i}._domainkey.{DOMAIN}", "CNAME"): [f"tok{i}.dkim.amazonses.com"] for i in (1, 2, 3)},
        **{(f"tok{i}.dkim.amazonses.com", "TXT"): [KEY] for i in (1, 2, 3)},
    },
}
SETTINGS = {
    "postmark": {"dkim_selector": "20240101120000pm"},
    "sendgrid": {"return_path_domain": f"em1234.{DOMAIN}"},
    "mailgun": {"mailgun_domain": f"mg.{DOMAIN}"},
    "ses": {"dkim_selector": "tok1,tok2,tok3"},
}


def check(records: dict, provider: str = "resend", **settings) -> list[tuple[str, str, str]]:
    with FakeDNS(records) as dns:
        found = check_sending_domain(
            Settings(provider=provider, from_email=f"newsletter@{DOMAIN}", **settings), Lookup(dns.address, timeout=1)
        )
    return [(f.severity, f.subject, f"{f.message} | {f.fix}") for f in found]


def severities(found) -> dict[str, str]:
    return {subject.split()[0]: severity for severity, subject, _ in found if subject != "DNS"}


@pytest.mark.parametrize("provider", list(PUBLISHED))
def test_what_each_provider_documents_passes(workdir, provider):
    found = check({**PUBLISHED[provider], **DMARC}, provider, **SETTINGS.get(provider, {}))
    # SES sends with its own MAIL FROM unless told otherwise: SPF is then a note, not something to publish.
    assert severities(found) == {"SPF": "note" if provider == "ses" else "ok", "DKIM": "ok", "DMARC": "ok"}, found


def test_resend_without_its_records_is_an_error_each_with_the_record_to_add(workdir):
    found = check({(DOMAIN, "TXT"): ["google-site-verification=abc"]})
    assert found == [
        (
            "error",
            f"SPF send.{DOMAIN}",
            "no SPF record (found nothing): Resend needs it to send | "
            f'add TXT send.{DOMAIN} "v=spf1 include:amazonses.com ~all"',
        ),
        (
            "error",
            f"DKIM resend._domainkey.{DOMAIN}",
            "no DKIM record: Resend mail would not be signed for your domain | "
            f"publish the DKIM record Resend shows for {DOMAIN}",
        ),
        (
            "error",
            f"DMARC _dmarc.{DOMAIN}",
            "no DMARC record for it or a parent domain: Gmail and Yahoo require one "
            "(p=none at least) from bulk senders | add TXT _dmarc."
            f'{DOMAIN} "v=DMARC1; p=none; rua=mailto:dmarc-reports@{DOMAIN}"',
        ),
    ]


@pytest.mark.parametrize(
    ("records", "says"),
    [
        (
            {(f"send.{DOMAIN}", "TXT"): ["v=spf1 include:_spf.google.com ~all"]},
            'found "v=spf1 include:_spf.google.com ~all", which does not have include:amazonses.com',
        ),
        (
            {(f"send.{DOMAIN}", "TXT"): ["v=spf1 -include:amazonses.com ~all"]},
            "which does not have include:amazonses.com",
        ),
        (
            {(f"send.{DOMAIN}", "TXT"): ["v=spf1 include:amazonses.com ~all", "v=spf1 mx -all"]},
            "2 SPF records ('v=spf1 include:amazonses.com ~all'; 'v=spf1 mx -all'): "
            "receivers treat that as a permanent",
        ),
        (
            {(f"send.{DOMAIN}", "TXT"): ["v=spf1 include:amazonses.com +all"]},
            "+all lets every server on the internet send as you",
        ),
    ],
)
def test_an_spf_record_that_would_fail(workdir, records, says):
    spf = check({**PUBLISHED["resend"], **DMARC, **records})[0]
    assert spf[:2] == ("error", f"SPF send.{DOMAIN}") and says in spf[2], spf


def test_spf_follows_includes_and_redirects_as_receivers_do(workdir):
    nested = {
        (f"send.{DOMAIN}", "TXT"): [f"v=spf1 ip4:192.0.2.1 redirect=_spf.{DOMAIN}"],
        (f"_spf.{DOMAIN}", "TXT"): ["v=spf1 include:_spf.mail.example.net ~all"],
        ("_spf.mail.example.net", "TXT"): ["v=spf1 include:amazonses.com -all"],
    }
    assert check({**PUBLISHED["resend"], **DMARC, **nested})[0][0] == "ok"


def test_two_spf_records_on_the_from_domain_are_an_error_whatever_the_return_path(workdir):
    broken = {(DOMAIN, "TXT"): ["v=spf1 include:_spf.google.com ~all", "v=spf1 include:amazonses.com ~all"]}
    found = check({**PUBLISHED["resend"], **DMARC, **broken})
    assert found[0][:2] == ("error", f"SPF {DOMAIN}") and "merge them into one v=spf1 record" in found[0][2]
    assert severities(found[1:]) == {"SPF": "ok", "DKIM": "ok", "DMARC": "ok"}


def test_a_provider_with_its_own_return_path_warns_rather_than_fails(workdir):
    """Postmark's pm.mtasv.net passes SPF without the pm-bounces CNAME; it only does not align."""
    found = check(
        {**PUBLISHED["postmark"], **DMARC, (f"pm-bounces.{DOMAIN}", "CNAME"): []},
        "postmark",
        dkim_selector="20240101120000pm",
    )
    spf = next(f for f in found if f[1].startswith("SPF"))
    assert spf[0] == "warning" and "does not align" in spf[2]
    assert f"add CNAME pm-bounces.{DOMAIN} → pm.mtasv.net" in spf[2]
    ses = check({**PUBLISHED["ses"], **DMARC}, "ses", dkim_selector="tok1,tok2,tok3")
    assert ses[0][0] == "note" and "SES sends with its own MAIL FROM (amazonses.com)" in ses[0][2]


def test_selectors_that_cannot_be_guessed_are_asked_for(workdir):
    found = check({**PUBLISHED["postmark"], **DMARC}, "postmark")
    dkim = next(f for f in found if f[1].startswith("DKIM"))
    assert dkim[0] == "warning" and "not checked: Postmark's selector carries a date" in dkim[2]
    assert "set VERDICTS_DKIM_SELECTOR" in dkim[2]


def test_named_selectors_must_each_be_published(workdir):
    missing = {key: value for key, value in PUBLISHED["ses"].items() if key != ("tok2.dkim.amazonses.com", "TXT")}
    found = check({**missing, **DMARC}, "ses", dkim_selector="tok1,tok2,tok3")
    assert ("error", f"DKIM tok2._domainkey.{DOMAIN}") in [f[:2] for f in found]
    assert "found CNAME tok2.dkim.amazonses.com, which has no DKIM key" in next(f[2] for f in found if "tok2" in f[1])
    assert ("ok", f"DKIM {DOMAIN}") in [f[:2] for f in found]


def test_of_several_usual_selectors_one_will_do_and_none_is_a_warning(workdir):
    found = check({**PUBLISHED["mailgun"], **DMARC}, "mailgun", mailgun_domain=f"mg.{DOMAIN}")
    assert ("ok", f"DKIM mg.{DOMAIN}", "found a key for pic (rsa key) | ") in found
    unsigned = {k: v for k, v in PUBLISHED["mailgun"].items() if "_domainkey" not in k[0]}
    found = check({**unsigned, **DMARC}, "mailgun", mailgun_domain=f"mg.{DOMAIN}")
    dkim = next(f for f in found if f[1].startswith("DKIM"))
    assert dkim[0] == "warning" and "none of Mailgun's usual selectors (k1, mx, smtp, pic, krs, mailo)" in dkim[2]


def test_a_revoked_dkim_key_is_an_error(workdir):
    revoked = {(f"resend._domainkey.{DOMAIN}", "TXT"): ["v=DKIM1; k=rsa; p="]}
    dkim = check({**PUBLISHED["resend"], **DMARC, **revoked})[1]
    assert dkim[0] == "error" and "an empty p= means the key was revoked" in dkim[2]


def test_a_mailgun_domain_apart_from_the_from_domain_may_not_align(workdir):
    records = {
        ("mg.other-brand.example.net", "TXT"): ["v=spf1 include:mailgun.org ~all"],
        ("k1._domainkey.mg.other-brand.example.net", "TXT"): [KEY],
        **DMARC,
    }
    found = check(records, "mailgun", mailgun_domain="mg.other-brand.example.net")
    assert ("warning", "DKIM mg.other-brand.example.net") in [f[:2] for f in found]


@pytest.mark.parametrize(
    ("records", "severity", "says"),
    [
        (
            {(f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=quarantine; rua=mailto:d@example.org"]},
            "ok",
            "(policy quarantine)",
        ),
        ({(f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=none"]}, "warning", "with no rua= address"),
        ({(f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; rua=mailto:d@example.org"]}, "error", "without a valid p="),
        (
            {(f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=none; rua=mailto:a@example.org", "v=DMARC1; p=reject"]},
            "error",
            "2 DMARC records: receivers ignore them all",
        ),
        # The organisational domain's record covers its subdomains, with sp= when it has one.
        (
            {("_dmarc.example.org", "TXT"): ["v=DMARC1; p=reject; sp=none; rua=mailto:d@example.org"]},
            "ok",
            "(policy none)",
        ),
        ({("_dmarc.example.org", "TXT"): ["v=DMARC1; p=reject; rua=mailto:d@example.org"]}, "ok", "(policy reject)"),
        ({("_dmarc.example.org", "TXT"): ["spf2.0/pra"]}, "error", "no DMARC record for it or a parent domain"),
    ],
)
def test_dmarc(workdir, records, severity, says):
    dmarc = check({**PUBLISHED["resend"], **records})[-1]
    assert dmarc[0] == severity and says in dmarc[2], dmarc


def test_placeholder_domains_and_the_outbox_are_not_looked_up(workdir):
    with FakeDNS({}) as dns:
        lookup = Lookup(dns.address, timeout=1)
        outbox = check_sending_domain(Settings(from_email=f"newsletter@{DOMAIN}"), lookup)
        placeholder = check_sending_domain(Settings(provider="resend"), lookup)  # newsletter@verdicts.example.com
        assert dns.queries == []
    assert [(f.severity, f.message) for f in outbox] == [
        (
            "note",
            "VERDICTS_PROVIDER is outbox: messages are written to files, so the sending domain's records are "
            "not checked",
        )
    ]
    assert placeholder[0].severity == "note" and "verdicts.example.com, a placeholder" in placeholder[0].message


def test_no_dns_answer_is_one_warning_after_one_timeout(workdir):
    with FakeDNS({}, silent=True) as dns:
        started = time.monotonic()
        found = check_sending_domain(
            Settings(provider="resend", from_email=f"newsletter@{DOMAIN}"), Lookup(dns.address, timeout=0.5)
        )
        took = time.monotonic() - started
        asked = len(dns.queries)
    assert [(f.severity, f.subject) for f in found] == [("warning", "DNS")]
    assert f"could not check the records of {DOMAIN}: no answer from the DNS server within 0.5 s" in found[0].message
    assert took < 1.5 and asked <= 2  # one lookup timed out; the rest did not wait again


def test_config_check_reports_the_records_it_found(settings, verdicts, monkeypatch):
    for name, value in {
        "PROVIDER": "resend",
        "RESEND_API_KEY": "re_test",
        "FROM_EMAIL": f"newsletter@{DOMAIN}",
        "BASE_URL": "https://news.example.org",
        "SECRET_KEY": "k" * 32,
        "UNSUBSCRIBE_MAILTO": f"leave@{DOMAIN}",
        "LIST_ID": f"weekly.{DOMAIN}",
        "POSTAL_ADDRESS": "1 Main St, Springfield",
        "RESEND_WEBHOOK_SECRET": "whsec_x",
    }.items():
        monkeypatch.setenv(f"VERDICTS_{name}", value)
    with FakeDNS({**PUBLISHED["resend"], **DMARC}) as dns:
        monkeypatch.setenv("VERDICTS_DNS_SERVER", dns.address)
        good = verdicts("config", "check")
        dns.records.pop((f"resend._domainkey.{DOMAIN}", "TXT"))
        unsigned = verdicts("config", "check")
    assert good.code == 0, good.out
    spf = f'ok: SPF send.{DOMAIN}: found "v=spf1 include:amazonses.com ~all", which has include:amazonses.com'
    assert spf in good.out
    assert f"ok: DKIM {DOMAIN}: found a key for resend (rsa key)" in good.out
    assert f'ok: DMARC _dmarc.{DOMAIN}: found "v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}" (policy none)' in good.out
    assert "0 error(s), 0 warning(s): the configuration can run for real." in good.out
    assert unsigned.code == EXIT_CONFIGURATION
    assert f"error: DKIM resend._domainkey.{DOMAIN}: no DKIM record" in unsigned.out


def test_config_check_without_dns_says_it_could_not_check(settings, verdicts, monkeypatch):
    """Nothing listens on the port: a warning, never a crash, and the exit code is the configuration's."""
    for name, value in {
        "PROVIDER": "resend",
        "RESEND_API_KEY": "re_test",
        "FROM_EMAIL": f"newsletter@{DOMAIN}",
        "DNS_SERVER": "127.0.0.1:9",
    }.items():
        monkeypatch.setenv(f"VERDICTS_{name}", value)
    result = verdicts("config", "check")
    assert f"warning: DNS: could not check the records of {DOMAIN}: " in result.out
    assert "Traceback" not in result.out + result.err
