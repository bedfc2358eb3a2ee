"""Mailgun: ``POST /v3/<domain>/messages`` with up to 1,000 ``to`` and ``recipient-variables``.

The body goes once; Mailgun fills ``%recipient.<name>%`` per reader in the body, the
headers (each reader's own List-Unsubscribe) and the ``v:delivery`` variable that
webhooks echo back. Webhooks are HMAC-SHA256 over timestamp + token with the signing key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from pipeline.config import Settings
from pipeline.delivery.providers.base import (
    BatchRejected,
    EventKind,
    Outcome,
    OutgoingMessage,
    ProviderError,
    ProviderEvent,
    SendOutcome,
    WebhookRejected,
    WebhookReply,
)
from pipeline.delivery.providers.http import ApiProvider
from pipeline.delivery.providers.request import ApiRequest, event_delivery, sender
from pipeline.delivery.providers.webhooks import load_json, mapping, parse_time, require_secret, text
from pipeline.email.personal import merge_values


def _delivery(message: OutgoingMessage) -> dict[str, str]:
    """The reader's `%recipient.delivery%` (test copies have none)."""
    return {} if message.delivery_id is None else {"delivery": str(message.delivery_id)}


def _marker(variable: str) -> str:
    return f"%recipient.{variable}%"


class MailgunProvider(ApiProvider):
    name = "mailgun"
    default_base_url = "https://api.mailgun.net"
    credentials = ("mailgun_api_key", "mailgun_domain")
    per_request = 1000
    max_request_bytes = 24 * 1024 * 1024
    merges = True
    config_statuses = (401, 403, 404)  # 404: the domain is unknown in this region
    # Retries "during 8 hours" (documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-retries)
    # resend the first signature block, timestamp and all (hookdeck/webhook-skills, mailgun verification.md).
    webhook_retry_seconds = 8 * 3600

    @property
    def check_path(self) -> str:  # type: ignore[override]
        return f"/v3/domains/{self.settings.mailgun_domain}"

    def auth(self) -> httpx.Auth:
        return httpx.BasicAuth("api", self.credential("mailgun_api_key"))

    def build_request(self, chunk: Sequence[OutgoingMessage], campaign: str) -> ApiRequest:
        first = chunk[0]
        html_body, text_body = first.body.merged(_marker)
        # Only what differs per reader: the campaign goes once, as `v:campaign`.
        variables = {m.to_email: {**merge_values(m.values), **_delivery(m)} for m in chunk}
        form = [
            ("from", sender(self.settings)),
            ("subject", first.subject),
            ("text", text_body),
            ("html", html_body),
            ("o:tag", campaign),
            ("o:tracking", "no"),
        ]
        # One comma-separated `to` (Mailgun's documented form) rather than a field per reader:
        # encoding a thousand form fields cost more than the rest of the request.
        form.append(("to", ",".join(m.to_email for m in chunk)))
        # A header whose value differs between readers becomes a per-recipient variable.
        for name in first.headers:
            values = {m.to_email: m.headers.get(name, "") for m in chunk}
            if len(set(values.values())) == 1:
                form.append((f"h:{name}", first.headers[name]))
            else:
                variable = "h_" + name.lower().replace("-", "_")
                for address, value in values.items():
                    variables[address][variable] = value
                form.append((f"h:{name}", _marker(variable)))
        form += [
            ("v:delivery", _marker("delivery")),
            ("v:campaign", campaign),
            ("recipient-variables", orjson.dumps(variables).decode()),
        ]
        return ApiRequest("POST", f"/v3/{self.settings.mailgun_domain}/messages", form=form)

    def parse_response(self, response: httpx.Response, chunk: Sequence[OutgoingMessage]) -> list[SendOutcome]:
        message_id = str(response.json().get("id", "")).strip("<>") or None
        return [SendOutcome(Outcome.sent, provider_message_id=message_id)] * len(chunk)

    def describe_check(self, response: httpx.Response) -> str:
        domain = response.json().get("domain", {})
        return (
            f"Mailgun domain {domain.get('name', self.settings.mailgun_domain)!r} is {domain.get('state', 'unknown')}"
        )

    def sending_only(self, refusal: httpx.Response) -> str | None:
        """Mailgun refuses a domain sending key's reads as it refuses a wrong key (401), so ask the one endpoint
        such a key may use with a message that has no fields: a known key gets 400 for them, a wrong one 401
        again, and nothing can be sent."""
        domain = self.settings.mailgun_domain
        try:
            self.call(ApiRequest("POST", f"/v3/{domain}/messages", form=[]))
        except BatchRejected:
            pass  # the fields' 400: the key passed
        except ProviderError:
            return None
        return (
            f"the key is a sending key of {domain}: the domain's state (active, DNS verified) could not be read; "
            "sending should work"
        )

    @classmethod
    def read_webhook(cls, settings: Settings, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        key = require_secret(settings.mailgun_webhook_signing_key, "VERDICTS_MAILGUN_WEBHOOK_SIGNING_KEY")
        try:
            payload = load_json(body)
            sig = payload["signature"]
            timestamp, token, signature = str(sig["timestamp"]), str(sig["token"]), str(sig["signature"])
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected("the Mailgun webhook has no signature block") from None
        cls.require_fresh(settings, timestamp)
        # As bytes: compare_digest refuses non-ASCII text, and a forged signature is a 401, not a 400.
        expected = hmac.new(key.encode(), (timestamp + token).encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected.hex().encode(), signature.encode("utf-8", "surrogatepass")):
            raise WebhookRejected("the Mailgun signature does not verify")
        # Mailgun signs the token, not the body: the token is spent once, so a signature block cannot
        # carry a second, forged event; the event itself is stored under its own id.
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise ValueError(f"the Mailgun webhook's event-data is {type(data).__name__}, not an object")
        return WebhookReply([_event(data, token)], nonce=token)


#: Mailgun's own ``reason`` for a message it dropped because the address is on one of its lists.
SUPPRESSED_REASONS = {
    "suppress-bounce": EventKind.bounced,
    "suppress-complaint": EventKind.complained,
    "suppress-unsubscribe": EventKind.unsubscribed,
}
KINDS = {
    "accepted": EventKind.accepted,
    "delivered": EventKind.delivered,
    "opened": EventKind.opened,
    "clicked": EventKind.clicked,
    "unsubscribed": EventKind.unsubscribed,
    "complained": EventKind.complained,
}


def failure_kind(data: dict[str, Any]) -> EventKind:
    """What a ``failed`` event says about the address. Mailgun calls it ``permanent`` whenever it stops
    trying, also after hours of temporary refusals (reason ``old``, a 4xx such as 452 over quota): only a
    5xx refusal (or Mailgun's ``bounce`` without a code) proves the address dead."""
    reason = data.get("reason")
    if reason in SUPPRESSED_REASONS:
        return SUPPRESSED_REASONS[reason]
    if reason == "old":  # gave up after temporary failures: a soft bounce, counted
        return EventKind.soft_bounced
    if data.get("severity") != "permanent":
        return EventKind.other  # a deferral: Mailgun retries by itself
    code = mapping(data.get("delivery-status")).get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return EventKind.bounced if code >= 500 else EventKind.soft_bounced
    return EventKind.bounced if reason == "bounce" else EventKind.soft_bounced


def _event_id(data: dict[str, Any], token: str) -> str:
    """Mailgun's event id, the same in every retry and every webhook URL it posts the event to. It is
    unique within a day, so the event's own time goes with it; without an id, the signed token."""
    event_id, when = text(data.get("id")), data.get("timestamp")
    if event_id is None or not isinstance(when, (int, float)) or isinstance(when, bool):
        return f"token:{token}"
    return f"{event_id}@{when!r}"


def _event(data: dict[str, Any], token: str) -> ProviderEvent:
    name = data.get("event")
    kind = failure_kind(data) if name == "failed" else KINDS.get(name, EventKind.other)  # type: ignore[arg-type]
    status = mapping(data.get("delivery-status"))
    return ProviderEvent(
        event_id=_event_id(data, token),
        kind=kind,
        email=text(data.get("recipient")),
        delivery_id=event_delivery(data.get("user-variables")),
        provider_message_id=text(mapping(mapping(data.get("message")).get("headers")).get("message-id")),
        occurred_at=parse_time(data.get("timestamp")),
        detail=str(status.get("description") or status.get("message") or data.get("reason") or name),
    )
