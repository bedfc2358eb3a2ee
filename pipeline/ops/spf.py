"""The SPF checks of the sending domain: the record at the Return-Path domain the provider sends with (or a
CNAME that delegates it to the provider), that it authorises the provider's servers, and that the From
domain's own SPF is not broken (two records, ``+all``).
"""

from __future__ import annotations

import re

from pipeline.config import Settings
from pipeline.ops.dns_records import Lookup, shown
from pipeline.ops.findings import Finding, Severity
from pipeline.ops.provider_records import ProviderRecords

#: Receivers stop evaluating an SPF record after 10 DNS lookups (RFC 7208 4.6.4): a permanent error.
SPF_LOOKUP_LIMIT = 10
_SPF = re.compile(r"v=spf1(\s|$)", re.IGNORECASE)


def check_spf(lookup: Lookup, domain: str, records: ProviderRecords, settings: Settings) -> list[Finding]:
    own = settings.return_path_domain
    where = own or records.return_path(domain, settings)
    findings = []
    if where != domain:
        # The From domain's own SPF is not the provider's business, but two records there break it for everyone.
        findings += [f for f in [_spf_shape(lookup, domain)] if f]
    if where is None:
        authorised = _spf_record(lookup, domain)
        if authorised and _authorises(lookup, authorised, records.spf_include):
            return findings + [Finding("ok", f"SPF {domain}", f'found "{authorised}", which has {records.spf_include}')]
        severity: Severity = "warning" if records.label == "SendGrid" else "note"
        return findings + [
            Finding(
                severity,
                f"SPF {domain}",
                records.no_return_path,
                f"without automated security, add {records.spf_include} to {domain}'s SPF record"
                if records.label == "SendGrid"
                else "",
            )
        ]
    subject = f"SPF {where}"
    target = lookup.cname(where)
    if (
        target
        and records.return_path_cname
        and (target == records.return_path_cname or target.endswith("." + records.return_path_cname))
    ):
        return findings + [
            Finding(
                "ok",
                subject,
                f"found CNAME {target}: the Return-Path is {records.label}'s, and SPF aligns with your domain",
            )
        ]
    found = lookup.txt(where)
    spf = [t for t in found if _SPF.match(t)]
    delegate = (
        f"CNAME {where} → {_cname_example(records)}"
        if records.return_path_cname
        else f'TXT {where} "v=spf1 {records.spf_include} ~all"'
    )
    if not spf:
        severity = "error" if records.spf_required or own else "warning"
        why = (
            f"{records.label} needs it to send"
            if records.spf_required
            else f"without it {records.label}'s own Return-Path passes SPF but does not align with {domain} "
            "(DMARC then rests on DKIM alone)"
        )
        missing = f"no SPF record (found {shown(found)}): {why}"
        return findings + [Finding(severity, subject, missing, f"add {delegate}")]
    problem = _spf_problem(spf)
    if problem:
        return findings + [Finding("error", subject, problem, f"publish one record: {delegate}")]
    if not _authorises(lookup, spf[0], records.spf_include):
        return findings + [
            Finding(
                "error",
                subject,
                f'found "{spf[0]}", which does not have {records.spf_include}: '
                f"{records.label}'s servers would fail SPF",
                f"add {records.spf_include} before the all at the end",
            )
        ]
    return findings + [Finding("ok", subject, f'found "{spf[0]}", which has {records.spf_include}')]


def _spf_shape(lookup: Lookup, domain: str) -> Finding | None:
    spf = [t for t in lookup.txt(domain) if _SPF.match(t)]
    problem = _spf_problem(spf)
    return Finding("error", f"SPF {domain}", problem, "merge them into one v=spf1 record") if problem else None


def _spf_problem(spf: list[str]) -> str | None:
    if len(spf) > 1:
        listed = "; ".join(repr(t) for t in sorted(spf))
        return f"{len(spf)} SPF records ({listed}): receivers treat that as a permanent error, as if there were none"
    if spf and any(term.lower() in ("+all", "all") for term in spf[0].split()[1:]):
        return f'found "{spf[0]}": +all lets every server on the internet send as you'
    return None


def _spf_record(lookup: Lookup, domain: str) -> str | None:
    spf = [t for t in lookup.txt(domain) if _SPF.match(t)]
    return spf[0] if len(spf) == 1 else None


def _authorises(lookup: Lookup, record: str, mechanism: str, budget: list[int] | None = None) -> bool:
    """Whether ``record`` passes ``mechanism`` (e.g. ``include:mailgun.org``) itself or through the
    records it includes or redirects to, within the receivers' 10 lookups."""
    budget = budget if budget is not None else [SPF_LOOKUP_LIMIT]
    for term in record.lower().split()[1:]:
        if term[:1] in "-~?":
            continue  # a failing or neutral mechanism authorises nothing
        term = term.removeprefix("+")
        if term == mechanism.lower():
            return True
        kind, _, name = term.replace("=", ":", 1).partition(":")
        if kind in ("include", "redirect") and name and budget[0] > 0:
            budget[0] -= 1
            nested = _spf_record(lookup, name)
            if nested and _authorises(lookup, nested, mechanism, budget):
                return True
    return False


def _cname_example(records: ProviderRecords) -> str:
    return "pm.mtasv.net" if records.return_path_cname == "mtasv.net" else f"the name {records.label} gave you"
