"""Mailgun: ``POST /v3/<domain>/messages`` with up to 1,000 ``to`` and ``recipient-variables``.

The body goes once; Mailgun fills ``%recipient.<name>%`` per reader in the body, the
headers (each reader's own List-Unsubscribe) and the ``v:delivery`` variable that
webhooks echo back. Webhooks are HMAC-SHA256 over timestamp + token with the signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence

import httpx
import orjson

from pipeline.config import Settings
from pipeline.personal import merge_values
from pipeline.providers.base import (
    BatchRejected, EventKind, OutgoingMessage, Outcome, ProviderError, ProviderEvent, SendOutcome, WebhookRejected,
    WebhookReply,
)
from pipeline.providers.http import ApiProvider, ApiRequest, event_delivery, sender
from pipeline.providers.webhooks import parse_time, require_fresh, require_secret


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

    @property
    def check_path(self) -> str:  # type: ignore[override]
        return f"/v3/domains/{self.settings.mailgun_domain}"

    def auth(self) -> httpx.Auth:
        return httpx.BasicAuth("api", self.settings.mailgun_api_key.get_secret_value())

    def build_request(self, chunk: Sequence[OutgoingMessage], campaign: str) -> ApiRequest:
        first = chunk[0]
        html_body, text_body = first.body.merged(_marker)
        # Only what differs per reader: the campaign goes once, as `v:campaign`.
        variables = {m.to_email: {**merge_values(m.values), **_delivery(m)} for m in chunk}
        form = [("from", sender(self.settings)), ("subject", first.subject),
                ("text", text_body), ("html", html_body), ("o:tag", campaign), ("o:tracking", "no")]
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
        form += [("v:delivery", _marker("delivery")), ("v:campaign", campaign), ("recipient-variables", orjson.dumps(variables).decode())]
        return ApiRequest("POST", f"/v3/{self.settings.mailgun_domain}/messages", form=form)

    def parse_response(self, response: httpx.Response, chunk: Sequence[OutgoingMessage]) -> list[SendOutcome]:
        message_id = str(response.json().get("id", "")).strip("<>") or None
        return [SendOutcome(Outcome.sent, provider_message_id=message_id)] * len(chunk)

    def describe_check(self, response: httpx.Response) -> str:
        domain = response.json().get("domain", {})
        return f"Mailgun domain {domain.get('name', self.settings.mailgun_domain)!r} is {domain.get('state', 'unknown')}"

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
        return (f"the key is a sending key of {domain}: the domain's state (active, DNS verified) could not be read; "
                "sending should work")

    @classmethod
    def read_webhook(cls, settings: Settings, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        key = require_secret(settings.mailgun_webhook_signing_key, "VERDICTS_MAILGUN_WEBHOOK_SIGNING_KEY")
        try:
            payload = json.loads(body)
            sig = payload["signature"]
            timestamp, token, signature = str(sig["timestamp"]), str(sig["token"]), str(sig["signature"])
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected("the Mailgun webhook has no signature block") from None
        require_fresh(timestamp, settings.webhook_max_age_seconds)
        expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise WebhookRejected("the Mailgun signature does not verify")
        # Every verified token is stored (as "other" when the event changes nothing), so it is accepted once.
        return WebhookReply([_event(payload.get("event-data") or {}, token)])


def _event(data: dict, token: str) -> ProviderEvent:
    name = data.get("event")
    if name == "failed":
        # A temporary failure is a deferral Mailgun retries by itself; it gives up with a permanent one.
        kind = EventKind.bounced if data.get("severity") == "permanent" else EventKind.other
    else:
        kind = {"accepted": EventKind.accepted, "delivered": EventKind.delivered, "opened": EventKind.opened,
                "clicked": EventKind.clicked, "unsubscribed": EventKind.unsubscribed, "complained": EventKind.complained}.get(name, EventKind.other)
    message_id = ((data.get("message") or {}).get("headers") or {}).get("message-id")
    status = data.get("delivery-status") or {}
    return ProviderEvent(
        # The event id is unique only within a day; the signed token is unique per request.
        event_id=token, kind=kind, email=data.get("recipient"), delivery_id=event_delivery(data.get("user-variables")),
        provider_message_id=message_id, occurred_at=parse_time(data.get("timestamp")),
        detail=str(status.get("description") or status.get("message") or data.get("reason") or name)[:300],
    )
