"""Where a sign-up came from: the page or comparison slug (``source``), the link's ``utm_*`` parameters and a
referral code (``ref``), as the form, the embed and the API all take them.

A form carries them from its page's query string as hidden fields, so a bad one is dropped (a reader never
sees a sign-up fail over a link's tracking); the API names it (``problems``). A referral code counts only
when it names a confirmed reader: a forged, stale or unknown code is simply no referral.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sqlmodel import Session

from pipeline.errors import InvalidInput
from subscribers.consent import Evidence
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.tokens import read_referral

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_SOURCE = 200  # ConsentRecord.page's column
MAX_UTM = 100
MAX_REF = 100  # a code is ``<id>.<32 hex>``: anything longer is not ours


@dataclass(frozen=True)
class Origin:
    """What a sign-up said about where it came from, checked; ``ref`` is resolved later, in the sign-up's session."""

    page: str | None = None
    utm: dict[str, str] = field(default_factory=dict)
    ref: str | None = None

    def fields(self) -> dict[str, str]:
        """As a form's hidden fields carry it to the POST."""
        shown = {"source": self.page, **self.utm, "ref": self.ref}
        return {name: value for name, value in shown.items() if value}


def clean_text(name: str, value: object, limit: int) -> str:
    """One value, printable and at most ``limit`` characters; ``InvalidInput`` names the field and says why."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: must be a string, not {type(value).__name__}")
    text = value.strip()
    if len(text) > limit:
        raise InvalidInput(f"{name}: at most {limit} characters (it has {len(text)}); shorten it")
    if not text.isprintable():
        raise InvalidInput(f"{name}: {text[:60]!r} contains control characters; send printable text only")
    return text


def _limit(name: str) -> int:
    return MAX_SOURCE if name == "source" else MAX_UTM if name in UTM_KEYS else MAX_REF


def problems(values: Mapping[str, object]) -> tuple[Origin, list[tuple[str, str]]]:
    """The origin in ``values`` (keys ``source``, ``utm_*``, ``ref``; others are ignored) and, per bad value,
    (field, why): what the API reports, and what a form drops."""
    clean: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    for name in ("source", *UTM_KEYS, "ref"):
        if values.get(name) is None:
            continue
        try:
            text = clean_text(name, values[name], _limit(name))
        except InvalidInput as exc:
            bad.append((name, str(exc).removeprefix(f"{name}: ")))
            continue
        if text:
            clean[name] = text
    utm = {key: clean[key] for key in UTM_KEYS if key in clean}
    return Origin(clean.get("source"), utm, clean.get("ref")), bad


def lenient(values: Mapping[str, object]) -> Origin:
    """A form's origin: the good values, the bad ones dropped."""
    return problems(values)[0]


def referrer_id(session: Session, secret: str, code: str | None) -> int | None:
    """The confirmed reader a referral code names, else None (a code never fails a sign-up)."""
    reader_id = read_referral(secret, code) if code else None
    reader = session.get(Subscriber, reader_id) if reader_id is not None else None
    return reader_id if reader is not None and reader.status is SubscriberStatus.confirmed else None


def evidence_with(evidence: Evidence, origin: Origin, referrer: int | None = None) -> Evidence:
    """The consent evidence of a sign-up, with where it came from."""
    return replace(evidence, page=origin.page, utm=origin.utm or None, referrer_id=referrer)
