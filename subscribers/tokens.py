"""Signed, opaque tokens for the links in every email: never a raw id or address in a URL.

The purpose is the salt, so a token made for one kind of link cannot be replayed as
another; confirmation links also expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from pipeline.errors import VerdictsError

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"
VOTE = "vote"


class BadToken(VerdictsError):
    """A token that was tampered with, forged, expired, or made for another purpose."""


def _signer_kwargs() -> dict:
    return {"digest_method": hashlib.sha256}


@lru_cache(maxsize=32)
def _serializer(secret: str, purpose: str) -> URLSafeSerializer:
    # Building a serializer derives its key; every reader's links reuse the same one.
    return URLSafeSerializer(secret, salt=purpose, signer_kwargs=_signer_kwargs())


def make_token(secret: str, purpose: str, subscriber_id: int) -> str:
    return _serializer(secret, purpose).dumps(subscriber_id)


def read_token(secret: str, purpose: str, token: str) -> int:
    try:
        value = _serializer(secret, purpose).loads(token)
    except BadSignature:
        raise BadToken("this link is not valid (it was changed or is not ours)") from None
    return _subscriber_id(value)


def make_timed_token(secret: str, purpose: str, subscriber_id: int) -> str:
    return URLSafeTimedSerializer(secret, salt=purpose, signer_kwargs=_signer_kwargs()).dumps(subscriber_id)


def read_timed_token(secret: str, purpose: str, token: str, max_age_seconds: int) -> int:
    try:
        value = URLSafeTimedSerializer(secret, salt=purpose, signer_kwargs=_signer_kwargs()).loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        raise BadToken("this link has expired") from None
    except BadSignature:
        raise BadToken("this link is not valid (it was changed or is not ours)") from None
    return _subscriber_id(value)


def _subscriber_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadToken("this link is not valid")
    return value


@dataclass(frozen=True)
class VoteClaim:
    """Who may vote on which tool, and from which issue's email."""

    subscriber_id: int
    tool_id: int
    issue_id: int


@lru_cache(maxsize=8)
def _vote_mac(secret: str) -> hmac.HMAC:
    # A key of its own for voting links, derived once; each link then costs one HMAC.
    key = hmac.new(secret.encode(), b"verdicts-vote-link", hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _vote_signature(secret: str, payload: str) -> str:
    mac = _vote_mac(secret).copy()
    mac.update(payload.encode())
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def make_vote_token(secret: str, claim: VoteClaim) -> str:
    """``<reader>.<tool>.<issue>.<signature>``: an email carries one per tool per reader, so
    this is a single HMAC-SHA256 (144 bits kept) rather than a serializer round trip."""
    payload = f"{claim.subscriber_id}.{claim.tool_id}.{claim.issue_id}"
    return f"{payload}.{_vote_signature(secret, payload)}"


def read_vote_token(secret: str, token: str) -> VoteClaim:
    payload, _, signature = token.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) < 12 for p in parts) or not signature.isascii() or \
            not hmac.compare_digest(signature, _vote_signature(secret, payload)):
        raise BadToken("this voting link is not valid (it was changed or is not ours)")
    return VoteClaim(*(int(p) for p in parts))
