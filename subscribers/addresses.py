"""Addresses and names as we store them: normalised, cleaned, hashed for the suppression list, masked on pages.

Every way a reader comes in (the form, the CLI, a CSV) goes through these, so one person is one row
and a name is safe in a header and a greeting.
"""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

from pipeline.content.safe_text import SINGLE_LINE_REFUSED, char_name
from pipeline.errors import InvalidInput


def normalise_email(raw: str) -> str:
    """The address as we store it; raises InvalidInput with email-validator's reason.

    Lower-cased whole: mailbox providers treat local parts case-insensitively in practice,
    and one reader must not become two rows (and get two copies) by a capital letter.
    """
    try:
        # ASCII only (international domains become punycode): every provider and MIME header takes it.
        valid = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{raw.strip()!r} is not a valid email address: {exc}") from None
    if valid.ascii_email is None:  # cannot be: without SMTPUTF8, every valid address has an ASCII form
        raise InvalidInput(f"{raw.strip()!r} has no ASCII form; give the address in ASCII (punycode)")
    return valid.ascii_email.lower()


def mailbox(address: str) -> str:
    """The mailbox a normalised address delivers to, as the sign-up limit per address counts it: lower-case,
    and the local part's plus tag removed (``a+x@Example.com`` and ``A@example.com`` are one mailbox at every
    large provider). Only for counting: the address itself is stored and emailed as typed (normalised)."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.partition('+')[0] or local}@{domain}"


def clean_name(raw: str | None) -> str:
    """A display name safe for a From/To header and a greeting: whitespace collapsed (line breaks and separators
    become spaces), and nothing a send's header check refuses (SINGLE_LINE_REFUSED: controls, bidi overrides,
    lone surrogates): a name accepted here but refused there would stop every send it is part of."""
    name = " ".join((raw or "").split())
    if found := SINGLE_LINE_REFUSED.search(name):
        raise InvalidInput(f"name {raw!r} contains {char_name(found.group())}: remove it")
    if "=?" in name:  # mail programs would decode it as an RFC 2047 encoded word, not show it as typed
        raise InvalidInput(f"name {raw!r} contains '=?': remove it")
    if len(name) > 200:
        raise InvalidInput("name is longer than 200 characters")
    return name


def email_hash(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


def mask(address: str) -> str:
    """``a***@example.com``: enough for a reader to recognise, not enough to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
