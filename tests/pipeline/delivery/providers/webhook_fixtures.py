"""Documented webhook payloads of each provider, signed the way the provider signs them,
with keys generated for the test run (see ../shared/reference/email-delivery.md §7)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlmodel import select

from pipeline.store.models import DeliveryEvent

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem"


@dataclass
class Keys:
    """One set of webhook secrets; ``env`` is what the operator would configure."""

    postmark_auth: str = "hooks:" + secrets.token_urlsafe(12)
    mailgun_key: str = secrets.token_hex(16)
    resend_secret: str = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    sendgrid_private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    sns_private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    @property
    def env(self) -> dict[str, str]:
        public = self.sendgrid_private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "VERDICTS_POSTMARK_WEBHOOK_AUTH": self.postmark_auth,
            "VERDICTS_MAILGUN_WEBHOOK_SIGNING_KEY": self.mailgun_key,
            "VERDICTS_RESEND_WEBHOOK_SECRET": self.resend_secret,
            "VERDICTS_SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(public).decode(),
            "VERDICTS_SES_SNS_TOPIC_ARNS": TOPIC,
        }

    def sns_certificate(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.sns_private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.sns_private, hashes.SHA256())
        )


@dataclass(frozen=True)
class Event:
    """What happened, in our words; each provider's builder writes it in the provider's."""

    kind: str  # delivered, bounced, soft_bounced, complained, unsubscribed
    email: str
    delivery_id: int | None = None
    message_id: str = "msg-1"


def postmark(keys: Keys, e: Event, *, age: float = 0) -> tuple[dict, bytes]:
    meta = {"delivery": str(e.delivery_id)} if e.delivery_id else {}
    if e.kind in ("bounced", "soft_bounced"):
        data = {
            "RecordType": "Bounce",
            "ID": secrets.randbelow(10**9),
            "Type": "HardBounce" if e.kind == "bounced" else "SoftBounce",
            "Email": e.email,
            "MessageID": e.message_id,
            "BouncedAt": "2026-11-27T10:00:00Z",
            "Metadata": meta,
            "MessageStream": "broadcast",
        }
    elif e.kind == "complained":
        data = {
            "RecordType": "SpamComplaint",
            "ID": secrets.randbelow(10**9),
            "Type": "SpamComplaint",
            "Email": e.email,
            "MessageID": e.message_id,
            "BouncedAt": "2026-11-27T10:00:00Z",
            "Metadata": meta,
        }
    elif e.kind == "unsubscribed":
        data = {
            "RecordType": "SubscriptionChange",
            "Recipient": e.email,
            "MessageID": e.message_id,
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
            "Origin": "Recipient",
            "ChangedAt": "2026-11-27T10:00:00Z",
            "Metadata": meta,
        }
    else:
        data = {
            "RecordType": "Delivery",
            "Recipient": e.email,
            "MessageID": e.message_id,
            "DeliveredAt": f"2026-11-27T10:00:{secrets.randbelow(60):02d}Z",
            "Metadata": meta,
        }
    return postmark_signed(keys, data)


def postmark_signed(keys: Keys, data: object) -> tuple[dict, bytes]:
    """Postmark signs nothing: the URL's basic auth is its proof."""
    auth = "Basic " + base64.b64encode(keys.postmark_auth.encode()).decode()
    return {"Authorization": auth, "Content-Type": "application/json"}, json.dumps(data).encode()


def sendgrid(keys: Keys, e: Event, *, age: float = 0) -> tuple[dict, bytes]:
    name = {
        "bounced": "bounce",
        "soft_bounced": "bounce",
        "complained": "spamreport",
        "unsubscribed": "unsubscribe",
        "delivered": "delivered",
    }[e.kind]
    event = {
        "email": e.email,
        "timestamp": int(time.time()),
        "event": name,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": f"{e.message_id}.filter0001.1.0",
        "category": ["1-2026-W48"],
        "campaign": "1-2026-W48",
    }
    if e.kind == "soft_bounced":
        event["type"] = "blocked"
    if e.delivery_id:
        event["delivery"] = str(e.delivery_id)
    return sendgrid_signed(keys, json.dumps([event]).encode(), age=age)


def sendgrid_signed(keys: Keys, body: bytes, *, age: float = 0) -> tuple[dict, bytes]:
    """ECDSA over the timestamp header and the raw body, whatever the body holds."""
    timestamp = str(int(time.time() - age))
    signature = keys.sendgrid_private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }, body


def mailgun(keys: Keys, e: Event, *, age: float = 0) -> tuple[dict, bytes]:
    data = {
        "event": {"bounced": "failed", "soft_bounced": "failed"}.get(e.kind, e.kind),
        "recipient": e.email,
        "timestamp": time.time(),
        "id": secrets.token_hex(8),
        "message": {"headers": {"message-id": e.message_id}},
        "user-variables": {"delivery": str(e.delivery_id)} if e.delivery_id else {},
    }
    if e.kind in ("bounced", "soft_bounced"):
        data.update(
            severity="permanent" if e.kind == "bounced" else "temporary",
            reason="bounce",
            **{"delivery-status": {"code": 550, "description": "mailbox does not exist"}},
        )
    return mailgun_signed(keys, data, age=age)


def mailgun_signed(keys: Keys, data: object, *, age: float = 0, token: str | None = None) -> tuple[dict, bytes]:
    """Mailgun signs timestamp + token only; ``data`` goes unsigned beside them as ``event-data``."""
    timestamp, token = str(int(time.time() - age)), token or secrets.token_hex(25)
    signature = hmac.new(keys.mailgun_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    body = {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": data}
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def resend(keys: Keys, e: Event, *, age: float = 0) -> tuple[dict, bytes]:
    kind = {
        "bounced": "email.bounced",
        "soft_bounced": "email.bounced",
        "complained": "email.complained",
        "delivered": "email.delivered",
    }[e.kind]
    data = {
        "email_id": e.message_id,
        "to": [e.email],
        "from": "news@example.com",
        "subject": "Issue",
        "created_at": "2026-11-27T10:00:00Z",
        "tags": {"delivery": str(e.delivery_id)} if e.delivery_id else {},
    }
    if e.kind in ("bounced", "soft_bounced"):
        data["bounce"] = {
            "type": "Permanent" if e.kind == "bounced" else "Transient",
            "subType": "General",
            "message": "mailbox unavailable",
        }
    body = json.dumps({"type": kind, "created_at": "2026-11-27T10:00:01Z", "data": data}).encode()
    return resend_signed(keys, body, age=age)


def resend_signed(keys: Keys, body: bytes, *, age: float = 0, msg_id: str | None = None) -> tuple[dict, bytes]:
    """Svix: HMAC over id, timestamp and the raw body."""
    msg_id, timestamp = msg_id or f"msg_{secrets.token_hex(8)}", str(int(time.time() - age))
    key = base64.b64decode(keys.resend_secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    # During a secret rotation Svix sends several signatures; one valid one is enough.
    return {
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": f"v1,{base64.b64encode(b'old' * 8).decode()} v1,{sig}",
        "Content-Type": "application/json",
    }, body


def sns_envelope(keys: Keys, kind: str, message: str, **extra) -> dict:
    envelope = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": "2026-11-27T10:00:05.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
        **extra,
    }
    keys_signed = (
        ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
        if kind == "Notification"
        else ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    )
    text = "".join(f"{k}\n{envelope[k]}\n" for k in keys_signed if k in envelope).encode()
    envelope["Signature"] = base64.b64encode(keys.sns_private.sign(text, padding.PKCS1v15(), hashes.SHA256())).decode()
    return envelope


def ses(keys: Keys, e: Event, *, age: float = 0) -> tuple[dict, bytes]:
    mail = {
        "messageId": e.message_id,
        "destination": [e.email],
        "timestamp": "2026-11-27T10:00:00.000Z",
        "tags": {"delivery": [str(e.delivery_id)]} if e.delivery_id else {},
    }
    event: dict = {
        "eventType": {
            "bounced": "Bounce",
            "soft_bounced": "Bounce",
            "complained": "Complaint",
            "delivered": "Delivery",
        }[e.kind],
        "mail": mail,
    }
    if e.kind in ("bounced", "soft_bounced"):
        event["bounce"] = {
            "bounceType": "Permanent" if e.kind == "bounced" else "Transient",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": e.email, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        }
    elif e.kind == "complained":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": e.email}], "complaintFeedbackType": "abuse"}
    else:
        event["delivery"] = {"timestamp": "2026-11-27T10:00:01.000Z", "recipients": [e.email], "smtpResponse": "250 ok"}
    return ses_signed(keys, json.dumps(event))


def ses_signed(keys: Keys, message: str) -> tuple[dict, bytes]:
    """An SNS Notification carrying ``message`` (SES's event, a JSON string), signed by our test certificate."""
    envelope = sns_envelope(keys, "Notification", message)
    return {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain; charset=UTF-8"}, json.dumps(
        envelope
    ).encode()


def stored_events(session) -> list:
    """The events stored (spent signature tokens are kept apart, in webhook_nonce)."""
    return list(session.exec(select(DeliveryEvent)))


BUILDERS = {"postmark": postmark, "sendgrid": sendgrid, "mailgun": mailgun, "resend": resend, "ses": ses}
#: Which of our event kinds each provider can report.
SUPPORTED = {
    "postmark": {"delivered", "bounced", "soft_bounced", "complained", "unsubscribed"},
    "sendgrid": {"delivered", "bounced", "soft_bounced", "complained", "unsubscribed"},
    "mailgun": {"delivered", "bounced", "complained", "unsubscribed"},  # its temporary failures are deferrals
    "resend": {"delivered", "bounced", "soft_bounced", "complained"},
    "ses": {"delivered", "bounced", "soft_bounced", "complained"},
}
