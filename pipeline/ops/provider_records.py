"""Where each provider's documentation puts the DNS records of a domain it sends for.

Several providers send with their own Return-Path domain, so the SPF that matters is not always the From
domain's, and their DKIM selectors differ: `PROVIDERS` says, per provider, what the checks look for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.config import Settings


@dataclass(frozen=True)
class ProviderRecords:
    """Where a provider's documentation puts the records of a domain it sends for."""

    label: str
    #: The mechanism its SPF record carries, e.g. ``include:mailgun.org``.
    spf_include: str
    #: Its Return-Path domain for a From domain (and the settings), when it has one on the sender's domain.
    return_path: Callable[[str, Settings], str | None]
    #: Whether that Return-Path's SPF is required (the provider will not send without it) or only aligns SPF.
    spf_required: bool
    #: A CNAME target suffix that delegates the Return-Path to the provider (Postmark's pm-bounces).
    return_path_cname: str | None
    #: Its usual DKIM selectors; empty when they are per account (a date, tokens).
    selectors: tuple[str, ...]
    #: Where to find the selector when it cannot be guessed, or why the guesses may miss.
    selector_hint: str
    #: The domain its DKIM signature names (d=); default: the From domain.
    dkim_domain: Callable[[str, Settings], str] = lambda domain, _settings: domain
    #: What SPF means for this provider when there is no Return-Path of the sender's to look at.
    no_return_path: str = ""


PROVIDERS: dict[str, ProviderRecords] = {
    # https://postmarkapp.com/support/article/910-adding-a-custom-return-path-domain
    "postmark": ProviderRecords(
        label="Postmark",
        spf_include="include:spf.mtasv.net",
        return_path=lambda domain, _s: f"pm-bounces.{domain}",
        spf_required=False,
        return_path_cname="mtasv.net",
        selectors=(),
        selector_hint="Postmark's selector carries a date (e.g. 20240101120000pm): copy it from the domain's DNS "
        "settings at Postmark into VERDICTS_DKIM_SELECTOR",
    ),
    # https://resend.com/docs/dashboard/domains/introduction: MX and SPF on send.<domain>, DKIM resend._domainkey
    "resend": ProviderRecords(
        label="Resend",
        spf_include="include:amazonses.com",
        return_path=lambda domain, _s: f"send.{domain}",
        spf_required=True,
        return_path_cname=None,
        selectors=("resend",),
        selector_hint="Resend signs with the selector resend",
    ),
    # https://documentation.mailgun.com/docs/mailgun/user-manual/domains/domains-verify
    "mailgun": ProviderRecords(
        label="Mailgun",
        spf_include="include:mailgun.org",
        return_path=lambda _d, s: s.mailgun_domain,
        spf_required=True,
        return_path_cname=None,
        selectors=("k1", "mx", "smtp", "pic", "krs", "mailo"),
        selector_hint="Mailgun names the selector per domain (k1, mx, smtp, pic, …): copy it from the domain's "
        "DNS records at Mailgun into VERDICTS_DKIM_SELECTOR",
        dkim_domain=lambda domain, s: s.mailgun_domain or domain,
    ),
    # https://www.twilio.com/docs/sendgrid/ui/account-and-settings/how-to-set-up-domain-authentication:
    # automated security gives em<N>.<domain>, s1._domainkey and s2._domainkey as CNAMEs; without it, TXT records.
    "sendgrid": ProviderRecords(
        label="SendGrid",
        spf_include="include:sendgrid.net",
        return_path=lambda _d, _s: None,
        spf_required=False,
        return_path_cname="sendgrid.net",
        selectors=("s1", "s2", "m1"),
        selector_hint="SendGrid uses s1 and s2 (m1 without automated security), unless you chose a custom "
        "selector: set VERDICTS_DKIM_SELECTOR to it",
        no_return_path="SendGrid's automated security puts SPF on the em….<domain> CNAME it gave you: set "
        "VERDICTS_RETURN_PATH_DOMAIN to that name to check it",
    ),
    # https://docs.aws.amazon.com/ses/latest/dg/send-email-authentication-spf.html and -dkim-easy.html
    "ses": ProviderRecords(
        label="Amazon SES",
        spf_include="include:amazonses.com",
        return_path=lambda _d, _s: None,
        spf_required=False,
        return_path_cname=None,
        selectors=(),
        selector_hint="SES Easy DKIM uses three tokens per identity: copy them from the SES console (your domain's "
        "DKIM records) into VERDICTS_DKIM_SELECTOR, comma-separated",
        no_return_path="SES sends with its own MAIL FROM (amazonses.com), which passes SPF without aligning with "
        "your domain; DMARC passes through DKIM. For aligned SPF too, set a custom MAIL FROM domain at "
        "SES and name it in VERDICTS_RETURN_PATH_DOMAIN",
    ),
}
