"""The DMARC check of the sending domain: one valid policy (``p=none`` at least) at ``_dmarc.<domain>`` or
the closest parent domain's, with a ``rua=`` address that receives the reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.config import Settings
from pipeline.ops.dns_records import Lookup, record_tags
from pipeline.ops.findings import Finding
from pipeline.ops.provider_records import ProviderRecords

_DMARC = re.compile(r"v\s*=\s*DMARC1\s*(;|$)", re.IGNORECASE)
_POLICIES = ("none", "quarantine", "reject")


def check_dmarc(lookup: Lookup, domain: str, _records: ProviderRecords, _settings: Settings) -> list[Finding]:
    """The policy for ``domain``: its own record, or the closest parent's (whose sp= then applies)."""
    fix = f'add TXT _dmarc.{domain} "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"'
    for owner in _upwards(domain):
        name = f"_dmarc.{owner}"
        found = [t for t in lookup.txt(name) if _DMARC.match(t)]
        if not found:
            continue
        if len(found) > 1:
            return [
                Finding(
                    "error",
                    f"DMARC {name}",
                    f"{len(found)} DMARC records: receivers ignore them all",
                    "keep one v=DMARC1 record",
                )
            ]
        tags = record_tags(found[0])
        policy = tags.get("sp") if owner != domain and "sp" in tags else tags.get("p")
        if policy not in _POLICIES:
            return [
                Finding(
                    "error",
                    f"DMARC {name}",
                    f'found "{found[0]}" without a valid p= (none, quarantine or reject): receivers ignore it',
                    f"add p=none to it, or {fix}",
                )
            ]
        if "rua" not in tags:
            return [
                Finding(
                    "warning",
                    f"DMARC {name}",
                    f'found "{found[0]}" (policy {policy}), with no rua= address: '
                    "nobody sees the reports of who sends as you",
                    f"add rua=mailto:dmarc-reports@{owner} to it",
                )
            ]
        return [Finding("ok", f"DMARC {name}", f'found "{found[0]}" (policy {policy})')]
    return [
        Finding(
            "error",
            f"DMARC _dmarc.{domain}",
            "no DMARC record for it or a parent domain: Gmail and Yahoo "
            "require one (p=none at least) from bulk senders",
            fix,
        )
    ]


def _upwards(domain: str) -> Iterator[str]:
    """The domain, then each parent with two labels or more: DMARC's tree walk, short of the top-level domain."""
    labels = domain.split(".")
    for start in range(0, max(1, len(labels) - 1)):
        yield ".".join(labels[start:])
