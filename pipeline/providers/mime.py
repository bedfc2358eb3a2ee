"""RFC 5322 messages built with the stdlib ``email`` package: what a provider would receive."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from pipeline.providers.base import OutgoingMessage

# Long URLs in List-Unsubscribe must stay literal: with the default 78-column limit the
# stdlib would RFC 2047-encode them and mail clients would no longer find the link.
POLICY = SMTP.clone(max_line_length=998)


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
