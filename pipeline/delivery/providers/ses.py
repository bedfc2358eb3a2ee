"""Amazon SES v2: ``POST /v2/email/outbound-emails`` (SendEmail) per message, SigV4-signed.

SendBulkEmail would need a stored SES template; SendEmail with Simple content keeps our
own rendering, headers and tags, and the requests run concurrently. Signing is botocore's
SigV4 with the standard AWS credential chain. Webhooks arrive through SNS, whose RSA
signature is checked against the certificate SNS names (on an SNS host only).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import botocore.session
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.config import Settings
from pipeline.delivery.providers.base import (
    EventKind,
    Outcome,
    OutgoingMessage,
    ProviderConfigError,
    ProviderEvent,
    SendOutcome,
    WebhookRejected,
    WebhookReply,
)
from pipeline.delivery.providers.http import ApiProvider
from pipeline.delivery.providers.request import ApiRequest, correlation, event_delivery, sender
from pipeline.delivery.providers.webhooks import items, load_json, mapping, parse_time, require_secret, text

SNS_HOST = re.compile(r"^https://sns\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/")
SNS_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
OTHER_KINDS = {"Send": EventKind.accepted, "Open": EventKind.opened, "Click": EventKind.clicked}
#: The one Notification SNS sends, once, when SES starts publishing to the topic: text, not an event.
TOPIC_VALIDATED = "Successfully validated SNS topic for Amazon SES event publishing."


class SesProvider(ApiProvider):
    name = "ses"
    credentials = ("ses_region",)
    credentials_hint = "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and VERDICTS_SES_REGION"
    per_request = 1
    max_request_bytes = 40 * 1024 * 1024
    per_message_results = True
    check_path = "/v2/email/account"
    throttle_phrases = (
        "Maximum sending rate exceeded",
        "Throttling",
        "TooManyRequests",
        "Daily message quota exceeded",
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.aws_credentials = botocore.session.get_session().get_credentials()
        if self.aws_credentials is None:
            raise ProviderConfigError(
                "the ses provider needs AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or an AWS profile)"
            )
        # Many small requests run side by side: SES has no batch call for our own rendering.
        self.max_batch = 50 * settings.provider_concurrency

    def base_url(self) -> str:
        return f"https://email.{self.settings.ses_region}.amazonaws.com"

    def sign(self, method: str, url: str, content: bytes, headers: dict[str, str]) -> dict[str, str]:
        sent = {k: v for k, v in headers.items() if k.lower() == "content-type"}
        request = AWSRequest(method=method, url=url, data=content, headers=sent)
        SigV4Auth(self.aws_credentials.get_frozen_credentials(), "ses", self.settings.ses_region).add_auth(request)
        return {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token")
        }

    def build_request(self, chunk: Sequence[OutgoingMessage], campaign: str) -> ApiRequest:
        [m] = chunk
        html, text = m.json_bodies()
        payload = {
            "FromEmailAddress": sender(self.settings),
            "Destination": {"ToAddresses": [m.to_email]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": m.subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": text, "Charset": "UTF-8"}, "Html": {"Data": html, "Charset": "UTF-8"}},
                    "Headers": [{"Name": k, "Value": v} for k, v in m.headers.items()],
                }
            },
            "EmailTags": [{"Name": k, "Value": _TAG_UNSAFE.sub("_", v)} for k, v in correlation(m, campaign).items()],
        }
        if self.settings.ses_configuration_set:
            payload["ConfigurationSetName"] = self.settings.ses_configuration_set
        return ApiRequest("POST", "/v2/email/outbound-emails", json=payload)

    def refuses_one_message(self, response: httpx.Response) -> bool:
        """MessageRejected is about this message (one per request); any other 4xx is about the account."""
        kind = response.headers.get("x-amzn-errortype", "")
        return kind.startswith("MessageRejected") or (not kind and "MessageRejected" in response.text)

    def parse_response(self, response: httpx.Response, chunk: Sequence[OutgoingMessage]) -> list[SendOutcome]:
        return [SendOutcome(Outcome.sent, provider_message_id=response.json().get("MessageId"))]

    def describe_check(self, response: httpx.Response) -> str:
        data = response.json()
        quota = data.get("SendQuota", {})
        enabled = "enabled" if data.get("SendingEnabled", True) else "PAUSED"
        rate, sent, cap = (
            quota.get("MaxSendRate", "?"),
            quota.get("SentLast24Hours", 0),
            quota.get("Max24HourSend", "?"),
        )
        return f"SES {self.settings.ses_region}: sending {enabled}, {rate}/s, {sent:.0f} of {cap} in 24 h"

    def sending_only(self, refusal: httpx.Response) -> str | None:
        """Signed well but not allowed GetAccount (an IAM policy with ses:SendEmail alone): AccessDeniedException.
        A wrong secret is InvalidSignatureException, an unknown key UnrecognizedClientException."""
        if not refusal.headers.get("x-amzn-errortype", "").startswith("AccessDeniedException"):
            return None
        return (
            "these AWS credentials are genuine but may not call ses:GetAccount, so the sending quota and whether "
            f"sending is enabled in {self.settings.ses_region} were not checked; sending works if their policy "
            "allows ses:SendEmail"
        )

    @classmethod
    def read_webhook(cls, settings: Settings, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        topics = {
            t.strip() for t in require_secret(settings.ses_sns_topic_arns, "VERDICTS_SES_SNS_TOPIC_ARNS").split(",")
        }
        try:
            envelope = load_json(body)
            keys = SNS_SIGNED_KEYS[envelope["Type"]]
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected("not an SNS message") from None
        if envelope.get("TopicArn") not in topics:
            raise WebhookRejected(f"SNS topic {envelope.get('TopicArn')!r} is not in VERDICTS_SES_SNS_TOPIC_ARNS")
        verify_sns_signature(envelope, keys)
        if envelope["Type"] == "SubscriptionConfirmation":
            url = str(envelope["SubscribeURL"])
            if not SNS_HOST.match(url):
                raise WebhookRejected("the SubscribeURL is not on an SNS host")
            return WebhookReply([], confirm_url=url)
        if envelope["Type"] != "Notification" or envelope["Message"] == TOPIC_VALIDATED:
            return WebhookReply([])
        event = load_json(envelope["Message"])
        if not isinstance(event, dict):
            raise ValueError("the SNS Message is not an SES event object")
        return WebhookReply(_events(str(envelope["MessageId"]), event))


@lru_cache(maxsize=16)
def fetch_certificate(url: str) -> x509.Certificate:
    """The SNS signing certificate, fetched once per URL (only from an SNS host)."""
    response = httpx.get(url, timeout=10, follow_redirects=False)
    response.raise_for_status()
    return x509.load_pem_x509_certificate(response.content)


def verify_sns_signature(envelope: dict[str, Any], keys: tuple[str, ...]) -> None:
    url = str(envelope.get("SigningCertURL", ""))
    host = SNS_HOST.match(url)
    topic_region = str(envelope.get("TopicArn", "")).split(":")[3:4]
    if not host or not url.endswith(".pem") or [host.group("region")] != topic_region:
        raise WebhookRejected("SigningCertURL must be an https .pem on the SNS host of the topic's region")
    digest = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(envelope.get("SignatureVersion")))
    if digest is None:
        raise WebhookRejected("unknown SNS SignatureVersion")
    message = "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope).encode()
    try:
        key = fetch_certificate(url).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("not an RSA certificate")
        key.verify(base64.b64decode(envelope.get("Signature", "")), message, padding.PKCS1v15(), digest)
    except (InvalidSignature, ValueError, httpx.HTTPError) as exc:
        raise WebhookRejected(f"the SNS signature does not verify ({type(exc).__name__})") from None


def _events(sns_id: str, event: dict[str, Any]) -> list[ProviderEvent]:
    """One event per recipient the SES event names, each stored under the SNS MessageId (the same in
    every retry of the notification) and its position."""
    name = event.get("eventType") or event.get("notificationType")
    mail = mapping(event.get("mail"))
    kind: EventKind | None
    why: object
    people: list[tuple[object, object]]  # (address, why), as the payload has them
    if name == "Bounce":
        bounce = mapping(event.get("bounce"))
        kind = EventKind.bounced if bounce.get("bounceType") == "Permanent" else EventKind.soft_bounced
        why = f"{bounce.get('bounceType')}: {bounce.get('bounceSubType')}"
        people = [
            (r.get("emailAddress"), r.get("diagnosticCode") or why)
            for r in map(mapping, items(bounce.get("bouncedRecipients")))
        ]
        when = bounce.get("timestamp")
    elif name == "Complaint":
        complaint = mapping(event.get("complaint"))
        kind, when, why = EventKind.complained, complaint.get("timestamp"), complaint.get("complaintFeedbackType")
        complained = map(mapping, items(complaint.get("complainedRecipients")))
        people = [(r.get("emailAddress"), why or name) for r in complained]
    elif name == "Delivery":
        delivery = mapping(event.get("delivery"))
        # The recipients it reached, not every destination of the message.
        kind, when = EventKind.delivered, delivery.get("timestamp") or mail.get("timestamp")
        people = [(a, name) for a in items(delivery.get("recipients"))]
    else:
        kind = OTHER_KINDS.get(str(name))
        if kind is None:
            return []
        people, when = [(a, name) for a in items(mail.get("destination"))], mail.get("timestamp")
    return [
        ProviderEvent(
            event_id=f"{sns_id}:{i}",
            kind=kind,
            email=text(email),
            occurred_at=parse_time(when),
            detail=str(why),
            delivery_id=event_delivery(mapping(mail.get("tags"))),
            provider_message_id=text(mail.get("messageId")),
        )
        for i, (email, why) in enumerate(people)
    ]
