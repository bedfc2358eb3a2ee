"""Postmark: ``POST /email/batch`` of up to 500 messages, one result per message.

Webhooks are not signed by Postmark; the webhook URL carries basic-auth credentials
(``https://user:password@…/webhooks/postmark``), compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.delivery.providers.base import (
    EventKind,
    Outcome,
    OutgoingMessage,
    ProviderEvent,
    SendOutcome,
    WebhookRejected,
    WebhookReply,
)
from pipeline.delivery.providers.http import ApiProvider
from pipeline.delivery.providers.request import ApiRequest, correlation, event_delivery, sender
from pipeline.delivery.providers.webhooks import load_json, parse_time, require_secret, text

log = logging.getLogger(__name__)

# Bounce types that say something about the reader's address; the rest (Transient delays,
# AutoResponder out-of-office replies, DMARCPolicy about our domain, …) change nothing.
BOUNCE_KINDS = {
    "HardBounce": EventKind.bounced,
    "BadEmailAddress": EventKind.bounced,
    "ManuallyDeactivated": EventKind.bounced,
    "SpamNotification": EventKind.complained,
    "Unsubscribe": EventKind.unsubscribed,
    "SoftBounce": EventKind.soft_bounced,
    "Blocked": EventKind.soft_bounced,
    "DnsError": EventKind.soft_bounced,
}


class PostmarkProvider(ApiProvider):
    name = "postmark"
    default_base_url = "https://api.postmarkapp.com"
    credentials = ("postmark_server_token",)
    per_request = 500
    max_request_bytes = 50 * 1024 * 1024
    per_message_results = True
    check_path = "/server"

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.credential("postmark_server_token")}

    def build_request(self, chunk: Sequence[OutgoingMessage], campaign: str) -> ApiRequest:
        from_ = sender(self.settings)
        return ApiRequest(
            "POST",
            "/email/batch",
            json=[
                {
                    "From": from_,
                    "To": m.to_email,
                    "Subject": m.subject,
                    "HtmlBody": html,
                    "TextBody": text,
                    "MessageStream": self.settings.postmark_stream,
                    "Tag": campaign,
                    "Metadata": correlation(m, campaign),
                    "Headers": [{"Name": k, "Value": v} for k, v in m.headers.items()],
                    "TrackOpens": False,
                    "TrackLinks": "None",
                }
                for m in chunk
                for html, text in [m.json_bodies()]
            ],
        )

    def parse_response(self, response: httpx.Response, chunk: Sequence[OutgoingMessage]) -> list[SendOutcome]:
        results = response.json()
        outcomes = []
        for _message, item in zip(chunk, results, strict=False):  # a short answer: see below
            code = item.get("ErrorCode", 0 if item.get("MessageID") else -1)
            if code == 0:
                outcomes.append(SendOutcome(Outcome.sent, provider_message_id=item.get("MessageID")))
            else:
                outcomes.append(SendOutcome(Outcome.failed, error=f"Postmark {code}: {item.get('Message', '')}"[:500]))
        # A short answer leaves the tail unaccounted for: it may have gone, so never blindly again.
        outcomes += [SendOutcome(Outcome.unknown, error="Postmark returned no result for this message")] * (
            len(chunk) - len(outcomes)
        )
        return outcomes

    def describe_check(self, response: httpx.Response) -> str:
        return f"Postmark server {response.json().get('Name', '?')!r}, stream {self.settings.postmark_stream!r}"

    @classmethod
    def read_webhook(cls, settings: Settings, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        expected = require_secret(settings.postmark_webhook_auth, "VERDICTS_POSTMARK_WEBHOOK_AUTH")
        given = headers.get("authorization", "")
        scheme, _, encoded = given.partition(" ")
        try:
            credentials = base64.b64decode(encoded, validate=True).decode() if scheme.lower() == "basic" else ""
        except ValueError:
            credentials = ""
        if not hmac.compare_digest(credentials.encode(), expected.encode()):
            raise WebhookRejected("the Postmark webhook did not carry the configured basic-auth credentials")
        return WebhookReply([_event(load_json(body))])


#: A SubscriptionChange's SuppressionReason (postmarkapp.com/developer/webhooks/subscription-change-webhook):
#: Postmark stopped sending because of a hard bounce, a spam complaint, or an unsubscribe (or an admin).
SUPPRESSION_KINDS = {
    "HardBounce": EventKind.bounced,
    "SpamComplaint": EventKind.complained,
    "ManualSuppression": EventKind.unsubscribed,
}
RECORD_KINDS = {
    "SpamComplaint": EventKind.complained,
    "Delivery": EventKind.delivered,
    "Open": EventKind.opened,
    "Click": EventKind.clicked,
}


def _kind(data: dict[str, Any], record: str) -> EventKind:
    if record == "Bounce":
        return BOUNCE_KINDS.get(data.get("Type"), EventKind.other)  # type: ignore[arg-type]
    if record != "SubscriptionChange":
        return RECORD_KINDS.get(record, EventKind.other)
    if data.get("SuppressSending") is not True:
        return EventKind.other  # a reactivation: the reader's own choice, on our side, decides
    reason = data.get("SuppressionReason")
    if reason not in SUPPRESSION_KINDS:
        log.warning(
            "Postmark suppressed an address for a reason it does not document (%.100r): nobody suppressed", reason
        )
    return SUPPRESSION_KINDS.get(reason, EventKind.other)  # type: ignore[arg-type]


def _event(data: object) -> ProviderEvent:
    if not isinstance(data, dict) or not text(data.get("RecordType")):
        # Every Postmark webhook names its kind: without it, it is not one (400).
        raise ValueError("a Postmark webhook is a JSON object with a RecordType")
    record = data["RecordType"]
    email = text(data.get("Email")) or text(data.get("Recipient"))
    when = data.get("BouncedAt") or data.get("DeliveredAt") or data.get("ChangedAt") or data.get("ReceivedAt")
    message_id = text(data.get("MessageID"))
    # A bounce's ID is Postmark's; other records have none, and these fields are the same in every retry.
    bounce_id = data.get("ID")
    event_id = str(bounce_id) if text(bounce_id) or type(bounce_id) is int else f"{record}:{message_id}:{email}:{when}"
    return ProviderEvent(
        event_id=event_id,
        kind=_kind(data, record),
        email=email,
        delivery_id=event_delivery(data.get("Metadata")),
        provider_message_id=message_id,
        occurred_at=parse_time(when),
        detail=str(data.get("Type") or data.get("SuppressionReason") or record),
    )
