"""The DKIM check of the sending domain: a published key at each selector named in VERDICTS_DKIM_SELECTOR,
or at one of the provider's usual selectors, for the domain its signature names (which DMARC aligns).
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.ops.dns_records import Lookup, record_tags, short
from pipeline.ops.findings import Finding
from pipeline.ops.provider_records import ProviderRecords


def check_dkim(lookup: Lookup, domain: str, records: ProviderRecords, settings: Settings) -> list[Finding]:
    signing = records.dkim_domain(domain, settings)
    named = [s.strip() for s in (settings.dkim_selector or "").split(",") if s.strip()]
    if not named and not records.selectors:
        return [
            Finding("warning", f"DKIM {signing}", f"not checked: {records.selector_hint}", "set VERDICTS_DKIM_SELECTOR")
        ]
    publish = f"publish the DKIM record {records.label} shows for {signing}"
    keys = {selector: _dkim_key(lookup, f"{selector}._domainkey.{signing}") for selector in named or records.selectors}
    found = [f"{selector} ({text})" for selector, (ok, text) in keys.items() if ok]
    # Named selectors, and a provider's only one, must each be there; of several guesses, one will do.
    required = named or (records.selectors if len(records.selectors) == 1 else ())
    findings = [
        Finding(
            "error",
            f"DKIM {selector}._domainkey.{signing}",
            problem or f"no DKIM record: {records.label} mail would not be signed for your domain",
            publish,
        )
        for selector, (ok, problem) in keys.items()
        if not ok and (problem or selector in required)
    ]
    if found:
        findings.append(Finding("ok", f"DKIM {signing}", "found a key for " + ", ".join(found)))
    elif not findings:
        findings.append(
            Finding(
                "warning",
                f"DKIM {signing}",
                f"none of {records.label}'s usual selectors ({', '.join(records.selectors)}) has a DKIM record",
                f"{records.selector_hint}; Gmail and Yahoo refuse unsigned bulk mail",
            )
        )
    if not _related(signing, domain):
        findings.append(
            Finding(
                "warning",
                f"DKIM {signing}",
                f"signs for {signing}, which is not {domain} or a domain above or below it: DMARC may not align",
                "send from an address at the provider's domain, or the other way round",
            )
        )
    return findings


def _dkim_key(lookup: Lookup, name: str) -> tuple[bool, str]:
    """(True, what was found) for a published key; (False, the problem), or (False, "") when nothing is there."""
    for text in lookup.txt(name):
        tags = record_tags(text)
        if "p" in tags:
            if not tags["p"]:
                return False, f'found "{short(text)}": an empty p= means the key was revoked'
            return True, f"{tags.get('k', 'rsa')} key"
    target = lookup.cname(name)
    if target:
        return False, f"found CNAME {target}, which has no DKIM key (a TXT record with p=)"
    return False, ""


def _related(a: str, b: str) -> bool:
    return a == b or a.endswith("." + b) or b.endswith("." + a)
