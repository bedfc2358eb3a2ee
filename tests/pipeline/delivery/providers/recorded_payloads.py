"""Webhook payloads the providers really sent, copied from django-anymail's tests (github.com/anymail/django-anymail,
``tests/test_<provider>_webhooks.py``, which record them "as received", sanitised). Only the recipients differ:
``{email}`` stands where the recorded address was, so each event lands on one of our readers, and Mailgun events
anymail shortened "for brevity" get back an ``id`` (named added-…), which every real one carries. The few payloads
that no one recorded are marked DERIVED, with the document they follow."""

from __future__ import annotations

import copy
from typing import Any

# --- Mailgun (tests/test_mailgun_webhooks.py) ---------------------------------------------------------------
#: test_failed_permanent_event: a 550 "does not exist", reason "bounce".
MAILGUN_FAILED_PERMANENT = {
    "event": "failed",
    "severity": "permanent",
    "reason": "bounce",
    "recipient": "{email}",
    "id": "added-permanent-1",
    "timestamp": 1534110422.389832,
    "log-level": "error",
    "message": {
        "headers": {
            "to": "{email}",
            "message-id": "20180812214658.1.0DF563D0B3597700@example.org",
            "from": "Test Sender ",
        }
    },
    "delivery-status": {
        "tls": True,
        "mx-host": "aspmx.l.example.org",
        "attempt-no": 1,
        "description": "",
        "session-seconds": 2.952177047729492,
        "utf8": True,
        "code": 550,
        "message": "5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "5.1.1 double-checking the recipient's email address for typos",
        "certificate-verified": True,
    },
}
#: test_failed_temporary_event: "No MX", 498, Mailgun still retrying.
MAILGUN_FAILED_TEMPORARY = {
    "event": "failed",
    "severity": "temporary",
    "reason": "generic",
    "timestamp": 1534111899.659519,
    "id": "added-temporary-1",
    "log-level": "warn",
    "recipient": "{email}",
    "message": {
        "headers": {
            "to": "{email}",
            "message-id": "20180812214638.1.4A7D468E9BC18C5D@example.org",
            "from": "Test Sender ",
            "subject": "Testing",
        }
    },
    "delivery-status": {
        "attempt-no": 3,
        "description": "No MX for nomx.example.com",
        "session-seconds": 0.0,
        "retry-seconds": 1800,
        "code": 498,
        "message": "No MX for nomx.example.com",
    },
}
#: DERIVED from MAILGUN_FAILED_TEMPORARY: Mailgun giving up after hours of 452 "over quota" refusals, which it
#: reports as severity "permanent", reason "old" (feedback.mailgun.com "The final failed retry event …";
#: documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/tracking-failures).
MAILGUN_GAVE_UP_OVER_QUOTA = {
    **MAILGUN_FAILED_TEMPORARY,
    "severity": "permanent",
    "reason": "old",
    "id": "gaveUpOverQuota-1",
    "delivery-status": {
        "attempt-no": 9,
        "session-seconds": 0.4,
        "code": 452,
        "description": "4.2.2 The email account that you tried to reach is over quota.",
        "message": "4.2.2 The email account that you tried to reach is over quota.",
    },
}
#: test_complained_event and test_unsubscribed_event.
MAILGUN_COMPLAINED = {
    "event": "complained",
    "id": "ncV2XwymRUKbPek_MIM-Gw",
    "timestamp": 1377214260.049634,
    "log-level": "warn",
    "recipient": "{email}",
    "message": {
        "headers": {
            "to": "foo@recipient.com",
            "message-id": "20130718032413.263EE2E0926@example.org",
            "from": "Sender Name <sender@example.org>",
            "subject": "We are not spammer",
        }
    },
}
MAILGUN_UNSUBSCRIBED = {
    "event": "unsubscribed",
    "id": "W3X4JOhFT-OZidZGKKr9iA",
    "timestamp": 1377213791.421473,
    "log-level": "info",
    "recipient": "{email}",
    "message": {"headers": {"message-id": "20130822232216.13966.79700@samples.mailgun.org"}},
}


def mailgun_suppressed(reason: str) -> dict:
    """DERIVED: a message Mailgun dropped because the address is on its own list, reason suppress-bounce,
    -complaint or -unsubscribe (its event documentation's ``reason`` values), on the recorded permanent failure."""
    return {
        **MAILGUN_FAILED_PERMANENT,
        "reason": reason,
        "id": f"suppressed-{reason}",
        "delivery-status": {"code": 605, "message": "Not delivering to previously bounced address", "description": ""},
    }


# --- SendGrid (tests/test_sendgrid_webhooks.py) ---------------------------------------------------------------
#: test_dropped_invalid_event, test_dropped_bounced, test_dropped_unsubscribed_event.
SENDGRID_DROPPED_INVALID = {
    "email": "{email}",
    "anymail_id": "c74002d9-7ccb-4f67-8b8c-766cec03c9a6",
    "timestamp": 1461095250,
    "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
    "sg_event_id": "3NPOePGOTkeM_U3fgWApfg",
    "sg_message_id": "filter0093p1las1.9128.5717FB8127.0",
    "reason": "Invalid",
    "event": "dropped",
}
SENDGRID_DROPPED_BOUNCED = {
    "email": "{email}",
    "timestamp": 1513299569,
    "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
    "event": "dropped",
    "category": "cat facts",
    "sg_event_id": "zmzJhfJgAfUSOW80yEbPyw==",
    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    "reason": "Bounced Address",
    "status": "5.0.0",
}
SENDGRID_DROPPED_UNSUBSCRIBED = {
    "email": "{email}",
    "anymail_id": "a36ec0f9-aabe-45c7-9a84-3e17afb5cb65",
    "timestamp": 1461095250,
    "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
    "sg_event_id": "oxy9OLwMTAy5EsuZn1qhIg",
    "sg_message_id": "filter0199p1las1.4745.5717FB6F5.0",
    "reason": "Unsubscribed Address",
    "event": "dropped",
}
#: test_bounce_event.
SENDGRID_BOUNCE = {
    "ip": "167.89.17.173",
    "status": "5.1.1",
    "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
    "sg_event_id": "lC0Rc-FuQmKbnxCWxX1jRQ",
    "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
    "sg_message_id": "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0",
    "tls": 1,
    "event": "bounce",
    "email": "{email}",
    "timestamp": 1461095250,
    "anymail_id": "de212213-bb66-4302-8f3f-20acdb7a104e",
    "type": "bounce",
}


def sendgrid_dropped(reason: str) -> dict:
    """DERIVED: the recorded drop with another of the reasons SendGrid documents for ``dropped``
    (twilio.com/docs/sendgrid/for-developers/tracking-events/event)."""
    return {**SENDGRID_DROPPED_INVALID, "reason": reason, "sg_event_id": f"dropped-{reason}"}


# --- Postmark (tests/test_postmark_webhooks.py) ---------------------------------------------------------------
POSTMARK_HARD_BOUNCE = {  # test_bounce_event
    "RecordType": "Bounce",
    "ID": 901542550,
    "Type": "HardBounce",
    "TypeCode": 1,
    "ServerID": 23,
    "Name": "Hard bounce",
    "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed",
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "{email}",
    "From": "sender@example.com",
    "BouncedAt": "2016-04-27T16:28:50.3963933-04:00",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Postmark event test",
    "Content": "...",
}
POSTMARK_SPAM_COMPLAINT = {  # test_spam_event
    "RecordType": "SpamComplaint",
    "ID": 901542551,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Tag": "Test",
    "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed",
    "ServerID": 1234,
    "Description": "",
    "Details": "Test spam complaint details",
    "Email": "{email}",
    "From": "sender@example.com",
    "BouncedAt": "2016-04-27T16:28:50.3963933-04:00",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": False,
    "Subject": "Postmark event test",
}
POSTMARK_BOUNCE_UNSUBSCRIBE = {  # test_bounce_unsubscribe_variant (anymail issue 447)
    "Description": "Unsubscribe or Remove request.",
    "ID": 555555555,
    "MessageID": "5555555-5555555-5555-5555555",
    "MessageStream": "outbound",
    "Name": "Unsubscribe request",
    "RecordType": "Bounce",
    "ServerID": 111111111,
    "Tag": "",
    "Type": "Unsubscribe",
    "TypeCode": 16,
    "Email": "{email}",
}


def postmark_subscription_change(suppress: bool, reason: str | None) -> dict:
    """test_unsubscribe (ManualSuppression), test_subscription_change_bounce (HardBounce), test_resubscribe
    (SuppressSending false, no reason); SpamComplaint is the third documented reason."""
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": "a4909a96-73d7-4c49-b148-a54522d3f7ac",
        "ServerID": 23,
        "MessageStream": "outbound",
        "ChangedAt": "2022-06-05T17:17:32Z",
        "Recipient": "{email}",
        "Origin": "Recipient",
        "SuppressSending": suppress,
        "SuppressionReason": reason,
        "Tag": "welcome-email",
        "Metadata": {"example": "value", "example_2": "value"},
    }


# --- Amazon SES through SNS (tests/test_amazon_ses_webhooks.py) ------------------------------------------------
SES_BOUNCE = {  # test_bounce_event, AWS's own example
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "reportingMTA": "dns; email.example.com",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "{email}",
                "status": "5.1.1",
                "action": "failed",
                "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User unknown",
            }
        ],
        "timestamp": "2016-01-27T14:59:44.101Z",
        "remoteMtaIp": "127.0.2.0",
        "feedbackId": "00000138111222aa-44455566-cccc-cccc-cccc-ddddaaaa068a-000000",
    },
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "source": "john@example.com",
        "sendingAccountId": "123456789012",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "destination": ["{email}", "mary@example.com", "richard@example.com"],
    },
}
SES_COMPLAINT = {  # test_complaint_event
    "notificationType": "Complaint",
    "complaint": {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complaintFeedbackType": "abuse",
        "complainedRecipients": [{"emailAddress": "{email}"}],
    },
    "mail": {
        "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        "destination": ["jane@example.com", "mary@example.com", "{email}"],
    },
}
SES_DELIVERY = {  # test_delivery_event: delivered to one of the message's three destinations
    "notificationType": "Delivery",
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        "destination": ["{email}", "mary@example.com", "richard@example.com"],
    },
    "delivery": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "recipients": ["{email}"],
        "processingTimeMillis": 546,
        "reportingMTA": "a8-70.smtp-out.amazonses.com",
        "smtpResponse": "250 ok:  Message 64111812 accepted",
        "remoteMtaIp": "127.0.2.0",
    },
}
#: test_sns_confirmation_success_notification: the Message SNS sends once SES publishes to the topic.
SES_TOPIC_VALIDATED = "Successfully validated SNS topic for Amazon SES event publishing."

# --- Resend (tests/test_resend_webhooks.py) -------------------------------------------------------------------
RESEND_BOUNCED = {  # test_hard_bounced_event
    "created_at": "2023-10-02T18:11:26.101Z",
    "type": "email.bounced",
    "data": {
        "bounce": {
            "message": "The recipient's email provider sent a hard bounce message, but didn't specify "
            "the reason for the hard bounce."
        },
        "created_at": "2023-10-02T18:11:25.729Z",
        "email_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "from": "Sender <from@example.com>",
        "subject": "Sending test",
        "to": ["{email}"],
    },
}
RESEND_COMPLAINED = {  # test_complained_event
    "created_at": "2023-10-02T18:10:03.690Z",
    "type": "email.complained",
    "data": {
        "created_at": "2023-10-02T18:10:03.241Z",
        "email_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "from": "Sender <from@example.com>",
        "subject": "Sending test",
        "to": ["{email}"],
    },
}


def addressed(payload: Any, email: str) -> Any:
    """A deep copy of ``payload`` with ``{email}`` replaced by the reader's address."""
    if isinstance(payload, dict):
        return {k: addressed(v, email) for k, v in payload.items()}
    if isinstance(payload, list):
        return [addressed(v, email) for v in payload]
    return email if payload == "{email}" else copy.copy(payload)
