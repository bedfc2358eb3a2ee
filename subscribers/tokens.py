"""Signed, opaque tokens for the links in every email: never a raw id or address in a URL."""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, URLSafeSerializer

from pipeline.errors import VerdictsError

UNSUBSCRIBE = "unsubscribe"


class BadToken(VerdictsError):
    """A token that was tampered with, forged, or made for another purpose."""


def _serializer(secret: str, purpose: str) -> URLSafeSerializer:
    # The purpose is the salt: an unsubscribe token cannot be replayed as another kind of link.
    return URLSafeSerializer(secret, salt=purpose, signer_kwargs={"digest_method": hashlib.sha256})


def make_token(secret: str, purpose: str, subscriber_id: int) -> str:
    return _serializer(secret, purpose).dumps(subscriber_id)


def read_token(secret: str, purpose: str, token: str) -> int:
    try:
        value = _serializer(secret, purpose).loads(token)
    except BadSignature:
        raise BadToken("this link is not valid (it was changed or is not ours)") from None
    if not isinstance(value, int):
        raise BadToken("this link is not valid")
    return value
