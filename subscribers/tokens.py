"""Signed tokens for the links in every email: the reader's id can be read but not changed,
and no address is ever in a URL.

Each purpose has its own key, so a token made for one kind of link cannot be replayed as
another; confirmation links also expire (itsdangerous, timestamped).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from pipeline.errors import VerdictsError

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"
VOTE = "vote"
#: A reader's referral code, in every "Forward this verdict" link: names the reader who shared, acts for nobody.
REFERRAL = "referral"


class BadToken(VerdictsError):
    """A token that was tampered with, forged, expired, or made for another purpose."""


def _signer_kwargs() -> dict[str, object]:
    return {"digest_method": hashlib.sha256}


def make_token(secret: str, purpose: str, subscriber_id: int) -> str:
    """``<reader>.<keyed BLAKE2s, 128 bits>`` with a key per purpose: every email carries several,
    so this is one keyed hash, not a serializer round trip (the send loop's hottest step)."""
    return signer(secret, purpose)(subscriber_id)


def read_token(secret: str, purpose: str, token: str) -> int:
    ids = _signed_ids(secret, purpose, token, 1)
    if ids is None:
        raise BadToken("this link is not valid (it was changed or is not ours)")
    return ids[0]


def read_referral(secret: str, code: str) -> int | None:
    """The reader a referral code names, or None for a code that is not ours: a sign-up never fails on it."""
    ids = _signed_ids(secret, REFERRAL, code, 1)
    return ids[0] if ids else None


def make_timed_token(secret: str, purpose: str, subscriber_id: int, left_at: int | None = None) -> str:
    """With ``left_at`` (a confirmation link sent to a reader who left: ``service.left_at``) the link names that
    departure too: it confirms only while the reader is still out since then, never an older link."""
    payload: int | list[int] = subscriber_id if left_at is None else [subscriber_id, left_at]
    return URLSafeTimedSerializer(secret, salt=purpose, signer_kwargs=_signer_kwargs()).dumps(payload)


def read_timed_token(secret: str, purpose: str, token: str, max_age_seconds: int) -> int:
    return read_timed_claim(secret, purpose, token, max_age_seconds)[0]


def read_timed_claim(secret: str, purpose: str, token: str, max_age_seconds: int) -> tuple[int, int | None]:
    """The reader's id and the departure the link was sent after (None: sent while the reader had not left)."""
    try:
        value = URLSafeTimedSerializer(secret, salt=purpose, signer_kwargs=_signer_kwargs()).loads(
            token, max_age=max_age_seconds
        )
    except SignatureExpired:
        raise BadToken("this link has expired") from None
    except BadSignature:
        raise BadToken("this link is not valid (it was changed or is not ours)") from None
    if isinstance(value, list) and len(value) == 2:
        return _subscriber_id(value[0]), _subscriber_id(value[1])
    return _subscriber_id(value), None


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


@lru_cache(maxsize=32)
def _keyed(secret: str, purpose: str) -> hashlib.blake2s:
    # A key of its own per kind of link (HMAC-SHA256 of the secret), keyed once per process:
    # each signature then copies the keyed state (quicker than keying again).
    key = hmac.new(secret.encode(), f"verdicts-link:{purpose}".encode(), hashlib.sha256).digest()
    return hashlib.blake2s(key=key, digest_size=16)


def _signature(secret: str, purpose: str, payload: str) -> str:
    # Keyed BLAKE2s (RFC 7693's MAC mode, in the stdlib), 128 bits in hex: every email carries
    # three of these per reader, and it is three times quicker than HMAC-SHA256 here.
    h = _keyed(secret, purpose).copy()
    h.update(payload.encode())
    return h.hexdigest()


def _signed_ids(secret: str, purpose: str, token: str, count: int) -> list[int] | None:
    """The ids of ``<id>.….<signature>`` when the signature is ours for this purpose."""
    payload, _, signature = token.rpartition(".")
    parts = payload.split(".")
    if len(parts) != count or not all(_is_id(p) for p in parts) or not signature.isascii():
        return None
    if not hmac.compare_digest(signature, _signature(secret, purpose, payload)):
        return None
    return [int(p) for p in parts]


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) < 12


def make_vote_token(secret: str, subscriber_id: int, issue_id: int) -> str:
    """``<reader>.<issue>.<signature>``: one per reader per issue; the link adds ``/<tool>/<verdict>``.
    The reader may vote on every tool of the issue, so the tool needs no signature of its own."""
    return signer(secret, VOTE)(subscriber_id, issue_id)


@lru_cache(maxsize=32)
def signer(secret: str, purpose: str) -> Callable[..., str]:
    """``sign(*ids)`` → ``<id>.….<signature>`` with the key bound once, for the send loop."""
    keyed = _keyed(secret, purpose)

    def sign(*ids: int) -> str:
        payload = ".".join(map(str, ids))
        h = keyed.copy()
        h.update(payload.encode())
        return f"{payload}.{h.hexdigest()}"

    return sign


def read_vote_token(secret: str, token: str, tool: str) -> VoteClaim:
    """The claim of ``/vote/<token>/<tool>/…``; whether the tool was in that issue is the caller's check."""
    ids = _signed_ids(secret, VOTE, token, 2)
    if ids is None or not _is_id(tool):
        raise BadToken("this voting link is not valid (it was changed or is not ours)")
    return VoteClaim(ids[0], int(tool), ids[1])
