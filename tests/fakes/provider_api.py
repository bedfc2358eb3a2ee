"""Fake send APIs of Postmark, SendGrid, Mailgun, Resend and Amazon SES on a real loopback HTTP server.

Request shapes, limits and error answers follow /work/shared/reference/email-delivery.md (sections 1-6).
Every shape, limit or auth problem is answered with the provider's error and recorded in ``violations``.
A queued ``Fault`` is consumed by the next send request that passed auth and whole-request validation.
Each fake also knows a key that may send and nothing else, refused on reads as its provider documents
(``SENDING_ONLY_ENV``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import re
import socket
import threading
import time
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import getaddresses
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

#: The credentials each fake accepts, and the settings that hold them on our side.
TEST_CREDENTIALS = {
    "postmark": {"token": "pm-test"},
    # Restricted Access keys: their scopes, as GET /v3/scopes lists them.
    "sendgrid": {
        "api_key": "SG.test",
        "scoped_keys": {"SG.mail-send-only": ["mail.send"], "SG.stats-only": ["stats.read"]},
    },
    # A Domain Sending Key: POST /v3/<domain>/messages only.
    "mailgun": {"api_key": "key-test", "domain": "mg.example.com", "sending_key": "sending-key-test"},
    # A key with "Sending access".
    "resend": {"api_key": "re_test", "sending_key": "re_sending_only"},
    # An IAM user whose policy allows ses:SendEmail alone.
    "ses": {
        "access_key": "AKIDTEST",
        "secret_key": "secret",
        "region": "eu-west-1",
        "send_only": {"access_key": "AKIDSENDONLY", "secret_key": "send-only-secret"},
    },
}
TEST_ENV = {
    "postmark": {"VERDICTS_POSTMARK_SERVER_TOKEN": "pm-test"},
    "sendgrid": {"VERDICTS_SENDGRID_API_KEY": "SG.test"},
    "mailgun": {"VERDICTS_MAILGUN_API_KEY": "key-test", "VERDICTS_MAILGUN_DOMAIN": "mg.example.com"},
    "resend": {"VERDICTS_RESEND_API_KEY": "re_test"},
    "ses": {"VERDICTS_SES_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret"},
}
#: The same settings with the key that may only send.
SENDING_ONLY_ENV = {
    "sendgrid": {"VERDICTS_SENDGRID_API_KEY": "SG.mail-send-only"},
    "mailgun": {"VERDICTS_MAILGUN_API_KEY": "sending-key-test"},
    "resend": {"VERDICTS_RESEND_API_KEY": "re_sending_only"},
    "ses": {"AWS_ACCESS_KEY_ID": "AKIDSENDONLY", "AWS_SECRET_ACCESS_KEY": "send-only-secret"},
}


class CaseInsensitiveDict(MutableMapping):
    """Header names keep their spelling; lookups ignore case."""

    def __init__(self, data=()):
        self._d: dict[str, tuple[str, str]] = {}
        self.update(data)

    def __setitem__(self, key, value):
        self._d[key.lower()] = (key, value)

    def __getitem__(self, key):
        return self._d[key.lower()][1]

    def __delitem__(self, key):
        del self._d[key.lower()]

    def __iter__(self):
        return (k for k, _ in self._d.values())

    def __len__(self):
        return len(self._d)

    def __repr__(self):
        return repr(dict(self.items()))


@dataclass
class AcceptedMessage:
    to: str
    subject: str
    html: str
    text: str
    headers: CaseInsensitiveDict
    metadata: dict[str, str]
    provider_message_id: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int  # 0 when the connection was dropped without an answer
    messages: int  # messages the send request carried (0 for other endpoints or unparseable bodies)
    size: int = 0  # bytes of the request body
    at: float = field(default_factory=time.monotonic)  # when it arrived: pacing checks


@dataclass(frozen=True)
class Fault:
    kind: str
    code: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    indexes: tuple[int, ...] = ()

    @classmethod
    def status(cls, code: int, retry_after: float | None = None) -> Fault:
        return cls("status", code=code, retry_after=retry_after)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def accept_then_drop(cls) -> Fault:
        return cls("accept_then_drop")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")  # accept, then answer 200 with a body that is not JSON

    @classmethod
    def reject(cls, *indexes: int) -> Fault:
        """Reject these batch positions (none given: every message)."""
        return cls("reject", indexes=indexes)


class Refuse(Exception):
    """A problem answered with the provider's error reply (``extra`` feeds the provider's error body)."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class Bad(Exception):
    """A problem with one message of a batch."""


@dataclass
class Req:
    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: HTTPMessage  # case-insensitive .get()
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    messages: int = 0


def json_reply(status: int, obj, headers: dict | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- shape helpers (raise Bad) ----------------------------------------------------------------


def _str(obj: dict, key: str, optional: bool = False) -> str:
    value = obj.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise Bad(f"{key} must be a string")
    return value


def _strmap(value, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Bad(f"{what} must be an object of string values")
    return value


def _substituted(text: str, subs: dict[str, str]) -> str:
    """SendGrid's legacy substitutions: each key replaced by its value, in the order given."""
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


def _pairs(value, what: str, name: str = "Name", val: str = "Value") -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(p, dict) and isinstance(p.get(name), str) and isinstance(p.get(val), str) for p in value
    ):
        raise Bad(f"{what} must be a list of {{{name}, {val}}} string pairs")
    return [(p[name], p[val]) for p in value]


def _one_address(value, what: str = "To") -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    addrs = getaddresses([value]) if isinstance(value, str) else []
    if len(addrs) != 1 or "@" not in addrs[0][1]:
        raise Bad(f"{what} must be exactly one address, got {value!r}")
    return addrs[0][1]


_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _tags(pairs: list[tuple[str, str]], what: str) -> dict[str, str]:
    for n, v in pairs:
        if not (_TAG.fullmatch(n) and _TAG.fullmatch(v)):
            raise Bad(f"{what} {n!r}={v!r}: only ASCII letters, digits, '_' and '-' (max 256)")
    return dict(pairs)


# ---- providers --------------------------------------------------------------------------------


class Provider:
    routes: list[tuple[str, str, str]]  # (method, path regex, handler name); a (?P<domain>) group must match creds
    check_body: dict = {}
    invalid_status = 400  # whole-request validation error, and the all-or-nothing answer to a reject fault
    max_body = 30_000_000
    strict = True  # all-or-nothing: any invalid message refuses the whole request

    def __init__(self, fake: FakeProviderAPI, creds: dict):
        self.fake, self.creds = fake, creds

    # hooks
    def authenticate(self, req: Req) -> None:
        raise NotImplementedError

    def error(self, status: int, message: str, **extra) -> Reply:
        return json_reply(status, {"message": message})

    def parse(self, req: Req) -> list[AcceptedMessage | str]:
        raise NotImplementedError

    def new_ids(self, n: int) -> tuple[str, list[str]]:
        return "", [str(uuid.uuid4()) for _ in range(n)]

    def reply(self, req: Req, batch_id: str, outcomes: list[tuple[str, str]]) -> Reply:
        raise NotImplementedError

    def is_strict(self, req: Req) -> bool:
        return self.strict

    def replay(self, req: Req) -> Reply | None:
        return None

    def remember(self, req: Req, reply: Reply) -> None:
        pass

    def idempotency_key(self, req: Req) -> str | None:
        return None

    def rate_headers(self, retry_after: float | None = None) -> dict[str, str]:
        return {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}

    def fault_reply(self, fault: Fault) -> Reply:
        reply = self.error(fault.code, HTTPStatus(fault.code).phrase)
        if fault.retry_after is not None:
            reply.headers.update(self.rate_headers(fault.retry_after))
        return reply

    def check(self, req: Req) -> Reply:
        return json_reply(200, self.check_body)

    def load_json(self, req: Req, kind: type):
        if req.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            raise Refuse(self.invalid_status, "Content-Type must be application/json", code=402)
        try:
            data = json.loads(req.body)
        except ValueError as exc:
            raise Refuse(self.invalid_status, f"invalid JSON: {exc}", code=402) from None
        if not isinstance(data, kind):
            raise Refuse(self.invalid_status, f"body must be a JSON {'array' if kind is list else 'object'}", code=402)
        return data

    def send(self, req: Req) -> Reply:
        items = self.parse(req)
        n = len(items)
        problems = [(i, m) for i, m in enumerate(items) if isinstance(m, str)]
        for i, m in problems:
            self.fake._violation(f"{req.method} {req.path} message {i}: {m}")
        if problems and self.is_strict(req):
            return replace(
                self.error(self.invalid_status, "; ".join(f"message {i}: {m}" for i, m in problems)), messages=n
            )
        fault = self.fake._pop_fault() or Fault("none")
        if fault.kind == "status":
            return replace(self.fault_reply(fault), messages=n)
        if fault.kind == "drop":
            return Reply(0, drop=True, messages=n)
        if (stored := self.replay(req)) is not None:
            return replace(stored, messages=n)
        rejected = set(fault.indexes or range(n)) & set(range(n)) if fault.kind == "reject" else set()
        if rejected and self.is_strict(req):
            return replace(
                self.error(self.invalid_status, "recipient rejected: inactive or not verified", rejected=True),
                messages=n,
            )
        batch_id, ids = self.new_ids(n)
        outcomes = []
        for i, m in enumerate(items):
            if isinstance(m, str):
                outcomes.append(("invalid", m))
            elif i in rejected:
                outcomes.append(("rejected", f"{m.to} is inactive"))
            else:
                self.fake._accept(replace(m, provider_message_id=ids[i], idempotency_key=self.idempotency_key(req)))
                outcomes.append(("ok", ids[i]))
        reply = self.reply(req, batch_id, outcomes)
        self.remember(req, reply)
        if fault.kind == "accept_then_drop":
            return Reply(0, drop=True, messages=n)
        if fault.kind == "garbage":
            return Reply(200, b"<html>upstream proxy says hello", {"Content-Type": "text/html"}, messages=n)
        time.sleep(fault.seconds)
        return replace(reply, messages=n)


class Postmark(Provider):
    routes = [("POST", "/email/batch", "send"), ("GET", "/server", "check"), ("GET", "/messages/outbound", "search")]
    check_body = {"ID": 1, "Name": "Fake server", "ApiTokens": ["pm-test"], "DeliveryType": "Sandbox"}
    invalid_status = 422
    max_body = 50_000_000
    strict = False

    def authenticate(self, req):
        if req.headers.get("X-Postmark-Server-Token") != self.creds["token"]:
            raise Refuse(401, "Request does not contain a valid Server token.", code=10)

    def error(self, status, message, code=None, **extra):
        return json_reply(status, {"ErrorCode": code or {401: 10, 422: 300}.get(status, status), "Message": message})

    def parse(self, req):
        batch = self.load_json(req, list)
        if not 1 <= len(batch) <= 500:
            raise Refuse(422, f"batch of {len(batch)} messages; 1 to 500 allowed", code=410 if batch else 402)
        return [self.message(m) for m in batch]

    def message(self, m) -> AcceptedMessage | str:
        try:
            if not isinstance(m, dict):
                raise Bad("message must be an object")
            _str(m, "From")
            stream = self.creds.get("stream", "broadcast")
            if _str(m, "MessageStream") != stream:
                raise Bad(f"MessageStream {m['MessageStream']!r} does not exist (expected {stream!r})")
            metadata = _strmap(m.get("Metadata"), "Metadata")
            if "Metadata" not in m or len({k.lower() for k in metadata}) != len(metadata):
                raise Bad("Metadata required; keys must differ by more than case")
            if "Headers" not in m:
                raise Bad("Headers required")
            return AcceptedMessage(
                _one_address(_str(m, "To")),
                _str(m, "Subject"),
                _str(m, "HtmlBody"),
                _str(m, "TextBody"),
                CaseInsensitiveDict(_pairs(m["Headers"], "Headers")),
                metadata,
            )
        except Bad as exc:
            return str(exc)

    def reply(self, req, batch_id, outcomes):
        items = self.load_json(req, list)
        out = []
        for (kind, detail), m in zip(outcomes, items, strict=True):
            to = m.get("To") if isinstance(m, dict) else None
            if kind == "ok":
                out.append({"ErrorCode": 0, "Message": "OK", "MessageID": detail, "SubmittedAt": now_iso(), "To": to})
            elif kind == "rejected":
                out.append(
                    {
                        "ErrorCode": 406,
                        "Message": f"You tried to send to recipient(s) that have been marked as "
                        f"inactive. Found inactive addresses: {to}.",
                        "To": to,
                    }
                )
            else:
                out.append({"ErrorCode": 300, "Message": f"Invalid email request: {detail}", "To": to})
        return json_reply(200, out)

    def search(self, req):
        try:
            count, offset = int(req.query["count"][0]), int(req.query["offset"][0])
        except (KeyError, ValueError):
            raise Refuse(422, "count and offset are required integers", code=300) from None
        filters = {k[len("metadata_") :]: v[0] for k, v in req.query.items() if k.startswith("metadata_")}
        if not (1 <= count <= 500 and offset >= 0 and len(filters) <= 1):
            raise Refuse(422, "count 1-500, offset >= 0, at most one metadata_ filter", code=300)
        found = [m for m in list(self.fake.accepted) if all(m.metadata.get(k) == v for k, v in filters.items())]
        page = [
            {
                "MessageID": m.provider_message_id,
                "To": [{"Email": m.to, "Name": None}],
                "Recipients": [m.to],
                "Subject": m.subject,
                "Status": "Sent",
                "Metadata": m.metadata,
                "MessageStream": self.creds.get("stream", "broadcast"),
            }
            for m in found[offset : offset + count]
        ]
        return json_reply(200, {"TotalCount": len(found), "Messages": page})


class SendGrid(Provider):
    routes = [("POST", "/v3/mail/send", "send"), ("GET", "/v3/scopes", "check")]
    check_body = {"scopes": ["mail.send", "user.scheduled_sends.read"]}
    RESERVED = {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }

    def authenticate(self, req):
        key = (req.headers.get("Authorization") or "").removeprefix("Bearer ")
        scopes = {self.creds["api_key"]: self.check_body["scopes"], **self.creds.get("scoped_keys", {})}.get(key)
        if scopes is None:
            raise Refuse(401, "The provided authorization grant is invalid, expired, or revoked")
        # Any key may list its own scopes; every other endpoint needs its scope.
        if req.path == "/v3/mail/send" and "mail.send" not in scopes:
            raise Refuse(403, "access forbidden")

    def check(self, req):
        key = (req.headers.get("Authorization") or "").removeprefix("Bearer ")
        return json_reply(200, {"scopes": self.creds.get("scoped_keys", {}).get(key, self.check_body["scopes"])})

    def error(self, status, message, field=None, **extra):
        text = "too many requests" if status == 429 else message
        return json_reply(status, {"errors": [{"message": text, "field": field, "help": None}]}, self.rate_headers())

    def rate_headers(self, retry_after=None):
        self.fake._rate_calls += 1
        remaining = 0 if retry_after is not None else max(0, 600 - self.fake._rate_calls)
        reset = math.ceil(time.time() + (retry_after if retry_after is not None else 60))
        return {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}

    def headers(self, value, where: str) -> dict[str, str]:
        headers = _strmap(value, f"{where}headers")
        if reserved := [h for h in headers if h.lower() in self.RESERVED]:
            raise Bad(f"{where}headers: reserved header(s) {reserved} may not be set")
        return headers

    def parse(self, req):
        body = self.load_json(req, dict)
        try:
            if not isinstance(body.get("from"), dict) or not isinstance(body["from"].get("email"), str):
                raise Bad("from.email is required")
            content = body.get("content")
            if (
                not isinstance(content, list)
                or not content
                or not all(
                    isinstance(c, dict) and isinstance(c.get("type"), str) and isinstance(c.get("value"), str)
                    for c in content
                )
            ):
                raise Bad("content must be a non-empty list of {type, value} strings")
            parts = {c["type"]: c["value"] for c in content}
            types = [c["type"] for c in content]
            if "text/plain" in types and "text/html" in types and types.index("text/plain") > types.index("text/html"):
                raise Bad("content: text/plain must come before text/html")
            top_headers, top_args = (
                self.headers(body.get("headers"), ""),
                _strmap(body.get("custom_args"), "custom_args"),
            )
            pers = body.get("personalizations")
            if not isinstance(pers, list) or not 1 <= len(pers) <= 1000:
                raise Bad("personalizations must be a list of 1 to 1000 items")
        except Bad as exc:
            raise Refuse(400, str(exc)) from None
        seen: set[str] = set()
        items: list[AcceptedMessage | str] = []
        for i, p in enumerate(pers):
            try:
                if not isinstance(p, dict) or not isinstance(p.get("to"), list) or len(p["to"]) != 1:
                    raise Bad("each personalization needs exactly one 'to'")
                for kind in ("to", "cc", "bcc"):
                    for r in p.get(kind) or []:
                        if (
                            not isinstance(r, dict)
                            or not isinstance(r.get("email"), str)
                            or any(c in (r.get("name") or "") for c in ";,")
                        ):
                            raise Bad(f"{kind}: invalid recipient {r!r}")
                        if r["email"].lower() in seen:
                            raise Bad(f"address {r['email']} appears more than once")
                        seen.add(r["email"].lower())
                subs = _strmap(p.get("substitutions"), "substitutions")
                # Per personalization: at most 100 substitutions, 10,000 bytes (SendGrid's SDK limits).
                if len(subs) > 100 or sum(len(k.encode()) + len(v.encode()) for k, v in subs.items()) > 10_000:
                    raise Bad("substitutions exceed 100 entries or 10,000 bytes in one personalization")
                headers = {**top_headers, **self.headers(p.get("headers"), f"personalizations[{i}].")}
                args = {**top_args, **_strmap(p.get("custom_args"), "custom_args")}
                if len(json.dumps(args).encode()) >= 10_000:
                    raise Bad("custom_args must total less than 10,000 bytes")
                subject = p.get("subject", body.get("subject"))
                if not isinstance(subject, str):
                    raise Bad("subject is required (top level or per personalization)")

                items.append(
                    AcceptedMessage(
                        _one_address(p["to"][0]["email"]),
                        _substituted(subject, subs),
                        _substituted(parts.get("text/html", ""), subs),
                        _substituted(parts.get("text/plain", ""), subs),
                        CaseInsensitiveDict(headers),
                        args,
                    )
                )
            except Bad as exc:
                items.append(str(exc))
        if len(seen) > 1000:
            raise Refuse(400, f"{len(seen)} recipients; at most 1000 per request", field="personalizations")
        return items

    def new_ids(self, n):
        base = uuid.uuid4().hex[:22]
        return base, [f"{base}.{i}" for i in range(n)]

    def reply(self, req, batch_id, outcomes):
        return Reply(202, b"", {"X-Message-Id": batch_id, **self.rate_headers()})


class Mailgun(Provider):
    routes = [("POST", r"/v3/(?P<domain>[^/]+)/messages", "send"), ("GET", r"/v3/domains/(?P<domain>[^/]+)", "check")]
    max_body = 25_000_000

    def authenticate(self, req):
        given = req.headers.get("Authorization")
        if given == self.basic(self.creds["api_key"]):
            return
        if "sending_key" in self.creds and given == self.basic(self.creds["sending_key"]):
            if req.method == "POST" and req.path.endswith("/messages"):
                return
            raise Refuse(401, "Forbidden")  # as Mailgun answers a wrong key: only a send tells them apart
        raise Refuse(401, "Invalid private key")

    @staticmethod
    def basic(key: str) -> str:
        return "Basic " + base64.b64encode(f"api:{key}".encode()).decode()

    def check(self, req):
        return json_reply(200, {"domain": {"name": self.creds["domain"], "state": "active"}})

    def form(self, req) -> list[tuple[str, str]]:
        ctype = req.headers.get("Content-Type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            return parse_qsl(req.body.decode(), keep_blank_values=True)
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + req.body)
            return [
                (
                    part.get_param("name", header="content-disposition"),
                    part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8"),
                )
                for part in msg.iter_parts()
            ]
        raise Refuse(400, "body must be multipart/form-data or application/x-www-form-urlencoded")

    def parse(self, req):
        fields = self.form(req)
        one = {k: v for k, v in fields if not k.startswith(("h:", "v:"))}
        tos = [a for _, a in getaddresses([v for k, v in fields if k == "to"])]
        for key in ("from", "subject"):
            if not one.get(key):
                raise Refuse(400, f"'{key}' parameter is missing")
        if not tos or not all("@" in a for a in tos) or len(tos) > 1000:
            raise Refuse(400, f"'to' must hold 1 to 1000 valid addresses, got {len(tos)}")
        if "text" not in one and "html" not in one:
            raise Refuse(400, "Need at least one of 'text' or 'html' parameters specified")
        variables: dict = {}
        if "recipient-variables" in one:
            try:
                variables = json.loads(one["recipient-variables"])
                assert isinstance(variables, dict) and all(isinstance(v, dict) for v in variables.values())
            except (ValueError, AssertionError):
                raise Refuse(400, "recipient-variables must be a JSON object of objects") from None
            if missing := [a for a in tos if a not in variables]:
                raise Refuse(400, f"recipient-variables has no entry for {missing[:5]}")
        elif len(tos) > 1:
            raise Refuse(400, "recipient-variables is required when sending to more than one 'to'")
        custom = [(k, v) for k, v in fields if k.startswith(("h:", "v:"))]
        items = []
        for to in tos:
            values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in variables.get(to, {}).items()}

            def fill(s: str, values=values) -> str:
                return re.sub(r"%recipient\.([\w-]+)%", lambda m: values.get(m[1], m[0]), s)

            headers = CaseInsensitiveDict((k[2:], fill(v)) for k, v in custom if k.startswith("h:"))
            metadata = {k[2:]: fill(v) for k, v in custom if k.startswith("v:")}
            items.append(
                AcceptedMessage(
                    to, fill(one["subject"]), fill(one.get("html", "")), fill(one.get("text", "")), headers, metadata
                )
            )
        return items

    def new_ids(self, n):
        mid = f"{datetime.now(UTC):%Y%m%d%H%M%S}.1.{uuid.uuid4().hex[:16].upper()}@{self.creds['domain']}"
        return mid, [mid] * n

    def reply(self, req, batch_id, outcomes):
        return json_reply(200, {"id": f"<{batch_id}>", "message": "Queued. Thank you."})


class Resend(Provider):
    routes = [("POST", "/emails/batch", "send"), ("GET", "/domains", "check")]
    check_body = {"data": [{"id": "d91cd9bd-1176-453e-8fc1-35364d380206", "name": "example.com", "status": "verified"}]}
    invalid_status = 422
    max_body = 40_000_000
    NAMES = {
        400: "validation_error",
        401: "missing_api_key",
        403: "invalid_api_key",
        409: "invalid_idempotent_request",
        422: "validation_error",
        429: "rate_limit_exceeded",
    }

    def authenticate(self, req):
        auth = req.headers.get("Authorization")
        if "sending_key" in self.creds and auth == f"Bearer {self.creds['sending_key']}":
            if req.method == "POST" and req.path in ("/emails", "/emails/batch"):
                return
            raise Refuse(401, "This API key is restricted to only send emails", name="restricted_api_key")
        if auth != f"Bearer {self.creds['api_key']}":
            raise Refuse(401, "Missing API key") if not auth else Refuse(403, "API key is invalid")

    def error(self, status, message, name=None, **extra):
        return json_reply(
            status,
            {"statusCode": status, "name": name or self.NAMES.get(status, "application_error"), "message": message},
            self.rate_headers(),
        )

    def rate_headers(self, retry_after=None):
        wait = f"{retry_after:g}" if retry_after is not None else "1"
        return {
            "ratelimit-limit": "2",
            "ratelimit-remaining": "0" if retry_after is not None else "1",
            "ratelimit-reset": wait,
            **({"retry-after": wait} if retry_after is not None else {}),
        }

    def is_strict(self, req):
        mode = req.headers.get("x-batch-validation", "strict")
        if mode not in ("strict", "permissive"):
            raise Refuse(422, "x-batch-validation must be 'strict' or 'permissive'")
        return mode == "strict"

    def idempotency_key(self, req):
        key = req.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 256:
            raise Refuse(400, "Idempotency-Key must be 1 to 256 characters")
        return key

    def replay(self, req):
        if (key := self.idempotency_key(req)) is None:
            return None
        with self.fake._lock:
            digest, reply = self.fake._idempotency.get(key, (None, None))
        if digest is not None and digest != hashlib.sha256(req.body).hexdigest():
            raise Refuse(409, "Same idempotency key used with a different request payload")
        return reply

    def remember(self, req, reply):
        if (key := self.idempotency_key(req)) is not None:
            with self.fake._lock:
                self.fake._idempotency[key] = (hashlib.sha256(req.body).hexdigest(), reply)

    def parse(self, req):
        self.is_strict(req), self.idempotency_key(req)  # refuse bad option headers before any fault is consumed
        batch = self.load_json(req, list)
        if not 1 <= len(batch) <= 100:
            raise Refuse(422, f"batch of {len(batch)} emails; 1 to 100 allowed")
        return [self.message(m) for m in batch]

    def message(self, m) -> AcceptedMessage | str:
        try:
            if not isinstance(m, dict):
                raise Bad("email must be an object")
            if unsupported := {"attachments", "scheduled_at"} & set(m):
                raise Bad(f"not supported in batch: {sorted(unsupported)}")
            _str(m, "from")
            tags = _tags(_pairs(m.get("tags"), "tags", "name", "value"), "tag")
            return AcceptedMessage(
                _one_address(m.get("to"), "to"),
                _str(m, "subject"),
                _str(m, "html", True),
                _str(m, "text", True),
                CaseInsensitiveDict(_strmap(m.get("headers"), "headers")),
                tags,
            )
        except Bad as exc:
            return str(exc)

    def reply(self, req, batch_id, outcomes):
        body: dict = {"data": [{"id": detail} for kind, detail in outcomes if kind == "ok"]}
        if errors := [{"index": i, "message": detail} for i, (kind, detail) in enumerate(outcomes) if kind != "ok"]:
            body["errors"] = errors
        return json_reply(200, body, self.rate_headers())


class SES(Provider):
    routes = [("POST", "/v2/email/outbound-emails", "send"), ("GET", "/v2/email/account", "check")]
    check_body = {
        "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0},
        "SendingEnabled": True,
        "ProductionAccessEnabled": True,
    }
    max_body = 40_000_000
    TYPES = {
        400: "BadRequestException",
        403: "InvalidSignatureException",
        404: "NotFoundException",
        429: "TooManyRequestsException",
    }
    ACTIONS = {"/v2/email/outbound-emails": "ses:SendEmail", "/v2/email/account": "ses:GetAccount"}
    SIGV4 = re.compile(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
        r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})"
    )
    MISMATCH = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method."
    )

    def error(self, status, message, type=None, rejected=False, **extra):
        kind = "MessageRejected" if rejected else type or self.TYPES.get(status, "InternalFailure")
        if rejected:
            message = (
                f"Email address is not verified. The following identities failed the check in region "
                f"{self.creds['region'].upper()}: recipient"
            )
        return json_reply(status, {"message": message}, {"x-amzn-ErrorType": kind})

    def authenticate(self, req):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        auth, amz_date = req.headers.get("Authorization") or "", req.headers.get("X-Amz-Date") or ""
        if not (m := self.SIGV4.fullmatch(auth.strip())):
            raise Refuse(
                403,
                "Missing Authentication Token" if not auth else "Authorization header is malformed",
                type="MissingAuthenticationTokenException" if not auth else "IncompleteSignatureException",
            )
        akid, date, region, service, signed, signature = m.groups()
        secrets = {self.creds["access_key"]: self.creds["secret_key"]}
        if send_only := self.creds.get("send_only"):
            secrets[send_only["access_key"]] = send_only["secret_key"]
        if akid not in secrets:
            raise Refuse(
                403, "The security token included in the request is invalid.", type="UnrecognizedClientException"
            )
        if (region, service) != (self.creds["region"], "ses") or not amz_date.startswith(date):
            raise Refuse(403, f"Credential should be scoped to {date}/{self.creds['region']}/ses and match X-Amz-Date")
        try:
            age = abs(time.time() - datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
        except ValueError:
            raise Refuse(403, "X-Amz-Date must be YYYYMMDDTHHMMSSZ") from None
        if age > 900:
            raise Refuse(403, "Signature expired: X-Amz-Date is more than 15 minutes from the server time")
        names = signed.split(";")
        if not {"host", "x-amz-date"} <= set(names) or any(req.headers.get(n) is None for n in names):
            raise Refuse(403, "SignedHeaders must include host and x-amz-date, and every signed header must be sent")
        aws = AWSRequest(
            method=req.method,
            url=f"http://{req.headers.get('Host', '')}{req.raw_path}",
            data=req.body,
            headers={n: req.headers[n] for n in names},
        )
        aws.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(akid, secrets[akid]), "ses", region)
        canonical = signer.canonical_request(aws)
        expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
        if signer.signed_headers(signer.headers_to_sign(aws)) != signed or not hmac.compare_digest(expected, signature):
            raise Refuse(403, self.MISMATCH)
        # Signed well, then IAM decides: this user's policy allows ses:SendEmail alone.
        action = self.ACTIONS.get(req.path, "ses:Unknown")
        if send_only and akid == send_only["access_key"] and action != "ses:SendEmail":
            raise Refuse(
                403,
                f"User: arn:aws:iam::123456789012:user/verdicts-sender is not authorized to perform: "
                f"{action} because no identity-based policy allows the {action} action",
                type="AccessDeniedException",
            )

    def parse(self, req):
        body = self.load_json(req, dict)
        try:
            _str(body, "FromEmailAddress")
            _str(body, "ConfigurationSetName", optional=True)
            dest, simple = body.get("Destination"), (body.get("Content") or {}).get("Simple")
            if not isinstance(dest, dict) or set(dest) - {"ToAddresses"}:
                raise Bad("Destination must hold only ToAddresses (one recipient per message)")
            if not isinstance(simple, dict) or not isinstance(simple.get("Body"), dict):
                raise Bad("Content.Simple with Subject and Body is required")
            subject, parts = simple.get("Subject"), simple["Body"]
            if not isinstance(subject, dict) or not all(isinstance(p, dict) for p in parts.values()) or not parts:
                raise Bad("Subject and Body.Text/Body.Html must be {Data} objects")
            headers = _pairs(simple.get("Headers"), "Headers")
            for n, v in headers:
                if not (re.fullmatch(r"[!-9;-~]{1,126}", n) and re.fullmatch(r"[ -~]{0,870}", v)):
                    raise Bad(f"header {n!r}: name <= 126 printable ASCII without ':', value <= 870 printable ASCII")
            names = [n.lower() for n, _ in headers]
            if dup := {n for n in names if names.count(n) > 1} & {
                "list-unsubscribe",
                "list-unsubscribe-post",
                "message-id",
                "subject",
            }:
                raise Bad(f"header(s) {sorted(dup)} may appear only once")
            tags = _tags(_pairs(body.get("EmailTags"), "EmailTags"), "EmailTag")
            return [
                AcceptedMessage(
                    _one_address(dest.get("ToAddresses"), "ToAddresses"),
                    _str(subject, "Data"),
                    _str(parts.get("Html", {}), "Data", True),
                    _str(parts.get("Text", {}), "Data", True),
                    CaseInsensitiveDict(headers),
                    tags,
                )
            ]
        except Bad as exc:
            raise Refuse(400, str(exc)) from None

    def new_ids(self, n):
        return "", [f"0102019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000" for _ in range(n)]

    def reply(self, req, batch_id, outcomes):
        return json_reply(200, {"MessageId": outcomes[0][1]})


PROVIDERS: dict[str, type[Provider]] = {
    "postmark": Postmark,
    "sendgrid": SendGrid,
    "mailgun": Mailgun,
    "resend": Resend,
    "ses": SES,
}


# ---- server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    timeout = 30
    fake: FakeProviderAPI

    def do_GET(self):
        self.fake._handle(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, *args):
        pass


#: Each provider's documented merge tags besides the per-reader values (email-delivery.md; the providers' docs):
#: Mailgun's unsubscribe variables; SendGrid's subscription-tracking "<% %>" and ASM tags; Postmark's broadcast
#: unsubscribe tag; Resend's and SES's unsubscribe placeholders (list management).
PROVIDER_TAGS = {
    "mailgun": re.compile(r"%(?:unsubscribe_url|tag_unsubscribe_url|mailing_list_unsubscribe_url)%"),
    "sendgrid": re.compile(r"<%\s*%>|<%asm_(?:group_unsubscribe|global_unsubscribe|preferences)_raw_url%>"),
    "postmark": re.compile(r"\{\{\{\s*pm:unsubscribe\s*\}\}\}"),
    "resend": re.compile(r"\{\{\{\s*RESEND_UNSUBSCRIBE_URL\s*\}\}\}"),
    "ses": re.compile(r"\{\{\s*amazonSESUnsubscribeUrl\s*\}\}"),
}


class FakeProviderAPI:
    def __init__(self, provider: str, credentials: dict):
        self.provider = PROVIDERS[provider](self, dict(credentials))
        self.accepted: list[AcceptedMessage] = []
        self.requests: list[RequestRecord] = []
        self.violations: list[str] = []
        self._faults: list[Fault] = []
        self._idempotency: dict[str, tuple[str, Reply]] = {}
        self._rate_calls = 0
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviderAPI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pop_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _accept(self, message: AcceptedMessage) -> None:
        message = self.provider_tags(message)
        with self._lock:
            self.accepted.append(message)

    def provider_tags(self, message: AcceptedMessage) -> AcceptedMessage:
        """The provider's own merge tags, filled in as it documents (its unsubscribe links for this reader),
        in the subject, both bodies and the headers; the per-reader values were filled in by ``parse``."""
        tags = PROVIDER_TAGS[type(self.provider).__name__.lower()]
        link = f"https://{type(self.provider).__name__.lower()}.provider.example/unsubscribe/{message.to}"

        def fill(text: str) -> str:
            return tags.sub(link, text)

        headers = CaseInsensitiveDict((k, fill(v)) for k, v in message.headers.items())
        return replace(
            message, subject=fill(message.subject), html=fill(message.html), text=fill(message.text), headers=headers
        )

    def _violation(self, problem: str) -> None:
        with self._lock:
            self.violations.append(problem)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        chunked = "chunked" in (h.headers.get("Transfer-Encoding") or "").lower()
        body = b"" if chunked else h.rfile.read(int(h.headers.get("Content-Length") or 0))
        req = Req(h.command, split.path, h.path, parse_qs(split.query), h.headers, body)
        p = self.provider
        try:
            if chunked:
                h.close_connection = True
                raise Refuse(411, "chunked bodies are not supported by the fake; send Content-Length")
            route = next(
                (
                    (name, m)
                    for method, pattern, name in p.routes
                    if method == req.method and (m := re.fullmatch(pattern, req.path))
                ),
                None,
            )
            if route is None:
                raise Refuse(404, f"no such endpoint: {req.method} {req.path}")
            name, match = route
            if match.groupdict().get("domain", self.provider.creds.get("domain")) != self.provider.creds.get("domain"):
                raise Refuse(404, f"Domain not found: {match['domain']}")
            p.authenticate(req)
            if len(body) > p.max_body:
                raise Refuse(413, f"request body of {len(body)} bytes exceeds {p.max_body}")
            reply = getattr(p, name)(req)
        except Refuse as exc:
            self._violation(f"{req.method} {req.path} -> {exc.status}: {exc.message}")
            reply = p.error(exc.status, exc.message, **exc.extra)
        except (
            Exception
        ) as exc:  # a bug in the fake or input it did not foresee: fail loudly, not with a dropped socket
            self._violation(f"{req.method} {req.path} -> 500: fake crashed: {exc!r}")
            reply = json_reply(500, {"message": f"fake crashed: {exc!r}"})
        with self._lock:
            self.requests.append(RequestRecord(req.method, req.path, reply.status, reply.messages, len(req.body)))
        if reply.drop:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            h.send_response(reply.status)
            for name, value in {**reply.headers, "Content-Length": str(len(reply.body))}.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(reply.body)
        except OSError:  # the client gave up (e.g. timed out on a slow fault): nobody to answer
            h.close_connection = True
