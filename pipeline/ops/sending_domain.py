"""The sending domain as Gmail and Yahoo check it for bulk senders: SPF, DKIM and DMARC records in DNS.

Since February 2024 both refuse bulk mail (about 5,000 a day to their users) that is not authenticated
with SPF *and* DKIM and covered by a DMARC policy (``p=none`` at least) that one of them aligns with.
Each provider documents where its records go, and several send with their own Return-Path domain, so
the SPF that matters is not always the From domain's: `pipeline.ops.provider_records` says, per provider,
what to look for. The checks, one module per record type: `spf`, `dkim`, `dmarc`.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.ops.dkim import check_dkim
from pipeline.ops.dmarc import check_dmarc
from pipeline.ops.dns_records import DnsUnavailable, Lookup
from pipeline.ops.findings import Finding
from pipeline.ops.provider_records import PROVIDERS
from pipeline.ops.spf import check_spf
from pipeline.secret_key import placeholder


def check_sending_domain(settings: Settings, lookup: Lookup | None = None) -> list[Finding]:
    """SPF, DKIM and DMARC of the FROM_EMAIL domain for the chosen provider, each with the record found and the fix."""
    domain = settings.from_email.rpartition("@")[2].lower()
    if settings.provider == "outbox":
        return [
            Finding(
                "note",
                "DNS",
                "VERDICTS_PROVIDER is outbox: messages are written to files, so the sending "
                "domain's records are not checked",
            )
        ]
    if placeholder(domain):
        return [
            Finding(
                "note",
                "DNS",
                f"FROM_EMAIL is at {domain}, a placeholder: its records are not checked",
                "set VERDICTS_FROM_EMAIL to an address on your sending domain",
            )
        ]
    lookup = lookup or Lookup(settings.dns_server)
    records = PROVIDERS[settings.provider]
    findings: list[Finding] = []
    for step in (check_spf, check_dkim, check_dmarc):
        try:
            findings += step(lookup, domain, records, settings)
        except DnsUnavailable as exc:
            findings.append(
                Finding(
                    "warning",
                    "DNS",
                    f"could not check the records of {domain}: {exc}",
                    "run `verdicts config check` where DNS answers, or set VERDICTS_DNS_SERVER",
                )
            )
            break
    if settings.fallback_provider not in (None, "outbox", settings.provider):
        findings.append(
            Finding(
                "note",
                "DNS",
                f"only {records.label}'s records were checked, not those of the "
                f"fallback provider {settings.fallback_provider}",
            )
        )
    return findings
