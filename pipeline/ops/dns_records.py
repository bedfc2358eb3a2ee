"""Reading the sending domain's DNS: TXT and CNAME lookups through one resolver, and the records' text as
the checks parse it (``k=v`` tags) and quote it in their findings.

dnspython is imported when a lookup is made, not with the module: the other commands need not pay for it.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.setting_checks import dns_address


class DnsUnavailable(Exception):
    """No DNS answer at all (no network, no resolver, a timeout): the records could not be checked."""


class Lookup:
    """TXT and CNAME lookups through one resolver; after the first failure every lookup fails at once,
    so a machine without DNS waits one timeout, not one per record."""

    def __init__(self, server: str | None = None, timeout: float = 2.0) -> None:
        import dns.resolver  # here, not at the top: a tenth of a second every other command need not pay

        self.failed: str | None = None
        try:
            self.resolver = dns.resolver.Resolver(configure=server is None)
        except (dns.resolver.NoResolverConfiguration, OSError) as exc:
            self.failed = f"no DNS resolver is configured on this machine ({type(exc).__name__})"
            return
        if server:
            host, port = dns_address(server)
            self.resolver.nameservers, self.resolver.port = [host], port
        self.resolver.timeout = self.resolver.lifetime = timeout
        self.resolver.cache = None

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._answer(name, "TXT")]

    def cname(self, name: str) -> str | None:
        targets = [str(r.target).rstrip(".").lower() for r in self._answer(name, "CNAME")]
        return targets[0] if targets else None

    def _answer(self, name: str, rdtype: str) -> list[Any]:  # rdata classes vary by type
        import dns.exception
        import dns.resolver

        if self.failed:
            raise DnsUnavailable(self.failed)
        try:
            answer = self.resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return []
        except dns.exception.Timeout:
            self.failed = f"no answer from the DNS server within {self.resolver.lifetime:g} s"
            raise DnsUnavailable(self.failed) from None
        except (dns.resolver.NoNameservers, dns.exception.DNSException, OSError) as exc:
            self.failed = f"the DNS server did not answer ({type(exc).__name__})"
            raise DnsUnavailable(self.failed) from None
        return list(answer.rrset or ())  # the records of the type asked for, at the end of any CNAME chain


def record_tags(text: str) -> dict[str, str]:
    """``k=v; k=v`` (DKIM, DMARC) → {k: v}, names lower-cased, spaces dropped from the values (a split key)."""
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "…"


def shown(texts: list[str]) -> str:
    return "; ".join(f'"{short(t)}"' for t in texts) if texts else "nothing"
