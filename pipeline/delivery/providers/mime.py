"""RFC 5322 messages built with the stdlib ``email`` package: what a provider would receive."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, EmailPolicy
from email.utils import format_datetime

from pipeline.delivery.providers.base import OutgoingMessage

#: Headers we build already valid (ASCII, RFC 2047 where needed) and that must stay as written: mail
#: clients look for the URLs in List-Unsubscribe as written, and the stdlib would re-fold List-Id as
#: unstructured text, splitting its quoted or encoded phrase into something that reads back empty.
LITERAL_HEADERS = frozenset({"list-unsubscribe", "list-id"})
#: Folded at RFC 5322's 998 rather than 76: the stdlib's fold of a long non-ASCII address name at 76
#: drops the space between two encoded words, so "Zoë Zoë" would read back as "ZoëZoë".
WIDE_HEADERS = LITERAL_HEADERS | {"from", "to"}
_WIDE = SMTP.clone(max_line_length=998)  # RFC 5322's hard limit for any line


class _MailPolicy(EmailPolicy):
    """SMTP's policy at 76 columns (RFC 2045's limit for quoted-printable body lines, within RFC
    5322's 78 for headers), except for the headers in WIDE_HEADERS and LITERAL_HEADERS."""

    def header_store_parse(self, name: str, value: str) -> tuple[str, str]:
        if name.lower() in LITERAL_HEADERS:
            if "\r" in value or "\n" in value:  # the stdlib's own parse refuses these; so must the bypass
                raise ValueError(f"the {name} header contains a line break")
            return name, value
        return super().header_store_parse(name, value)

    def fold(self, name: str, value: str) -> str:
        # typeshed leaves EmailPolicy.fold unannotated; it returns the folded header as text.
        folded: str = _WIDE.fold(name, value) if name.lower() in WIDE_HEADERS else super().fold(name, value)
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in WIDE_HEADERS:
            return _WIDE.fold_binary(name, value)
        return super().fold_binary(name, value)


POLICY = _MailPolicy(linesep="\r\n", max_line_length=76)


def build_mime(message: OutgoingMessage, *, from_email: str, from_name: str, date: datetime) -> EmailMessage:
    """``multipart/alternative``: text first, HTML last (RFC 2046: least to most preferred)."""
    mime = EmailMessage(policy=POLICY)
    mime["From"] = Address(display_name=from_name, addr_spec=from_email)
    mime["To"] = Address(display_name=message.to_name, addr_spec=message.to_email)
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(date)
    mime["Message-ID"] = message.message_id
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text, subtype="plain", cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", cte="quoted-printable")
    return mime
