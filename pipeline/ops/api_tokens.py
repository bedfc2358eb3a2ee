"""API tokens: made by an admin (the command line or the editor's page), shown once, stored as a SHA-256 hash,
scoped, revocable, their last use recorded.

A token is ``vt_`` and 43 random URL-safe characters (256 bits): nothing to guess, so no rate limit guards it.
Its first ``PREFIX_LENGTH`` characters find its row and name it in lists; the hash of the whole token is then
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from pipeline.content.safe_text import SINGLE_LINE_REFUSED, char_name
from pipeline.errors import InvalidInput, NotFound
from pipeline.store import audit
from pipeline.store.models import ApiToken, saved_id, utcnow

TOKEN_START = "vt_"
#: ``vt_`` and 8 random characters: enough that two tokens rarely share it, too few to help a guess.
PREFIX_LENGTH = 11
#: What each scope lets a token do.
SCOPES = {
    "comparisons:write": "POST /api/v1/comparisons: add and update comparisons (the import format)",
    "issues:read": "GET /api/v1/issues and /api/v1/issues/{id}: issues, their delivery counts and report figures",
}
#: A token's last use is written at most this often: a script calling every second must not write every second.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_NAME = 100


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``secret`` is the only time the whole token exists outside the caller's hands."""

    row: ApiToken
    secret: str


def token_hash(token: str) -> str:
    # surrogatepass: a header can hold any character; the hash must never raise on one.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def checked_name(name: str) -> str:
    """The token's name as typed, stripped; refused (naming the value and the fix) when it cannot name a token."""
    clean = name.strip()
    if not clean:
        raise InvalidInput("name: a token needs a name saying who uses it, e.g. 'site-deploy'")
    if len(clean) > MAX_NAME:
        raise InvalidInput(f"name: {clean[:40]!r}… is {len(clean)} characters; use at most {MAX_NAME}")
    bad = SINGLE_LINE_REFUSED.search(clean)
    if bad:
        raise InvalidInput(f"name: {clean[:60]!r} contains {char_name(bad.group())}; use plain text on one line")
    return clean


def checked_scopes(scopes: list[str]) -> list[str]:
    """The scopes, each known, in a stable order; at least one."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"scope: {unknown[0][:60]!r} is not a scope; use one or more of {', '.join(SCOPES)}")
    if not scopes:
        raise InvalidInput(f"scope: give a token at least one scope: {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]


def create_token(session: Session, name: str, scopes: list[str], created_by: str) -> NewToken:
    """A new token; a name already held by an active token is refused (revoke that one first, to rotate)."""
    clean, chosen = checked_name(name), checked_scopes(scopes)
    if session.exec(select(ApiToken).where(ApiToken.name == clean, col(ApiToken.revoked_at).is_(None))).first():
        raise InvalidInput(f"name: {clean!r} is already an active token's name; revoke it first, or pick another")
    secret = TOKEN_START + secrets.token_urlsafe(32)
    row = ApiToken(
        name=clean, prefix=secret[:PREFIX_LENGTH], token_hash=token_hash(secret), scopes=chosen, created_by=created_by
    )
    session.add(row)
    session.flush()
    audit.record(session, created_by, "api_token.create", detail=_described(row))
    return NewToken(row, secret)


def _described(row: ApiToken) -> dict[str, object]:
    """What the audit trail says of a token: never the secret, only what the lists show."""
    return {"name": row.name, "prefix": row.prefix, "scopes": list(row.scopes)}


def list_tokens(session: Session) -> list[ApiToken]:
    """Active tokens first, then the revoked; newest first within each."""
    query = select(ApiToken).order_by(col(ApiToken.revoked_at).is_not(None), col(ApiToken.id).desc())
    return list(session.exec(query))


def revoke(session: Session, which: str, actor: str) -> ApiToken:
    """Revoke the active token named ``which``, or whose prefix it is (as listed, ``vt_…``); at once, everywhere."""
    active = select(ApiToken).where(col(ApiToken.revoked_at).is_(None))
    found = list(session.exec(active.where(sa.or_(col(ApiToken.name) == which, col(ApiToken.prefix) == which))))
    if not found:
        raise NotFound(
            f"no active API token is named {which[:60]!r} or starts so: `verdicts api-token list` shows them"
        )
    if len(found) > 1:
        raise InvalidInput(f"{which!r} matches {len(found)} tokens; revoke by name instead")
    found[0].revoked_at = utcnow()
    session.flush()
    audit.record(session, actor, "api_token.revoke", detail=_described(found[0]))
    return found[0]


def revoke_id(session: Session, token_id: int, actor: str) -> ApiToken:
    """Revoke by id (the editor's button); revoking a revoked token again changes nothing."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"there is no API token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, "api_token.revoke", detail=_described(row))
    return row


@dataclass(frozen=True)
class Caller:
    """Who an API request acts for: the token's id, name and scopes."""

    token_id: int
    name: str
    scopes: tuple[str, ...]


def authenticate(session: Session, token: str, now: datetime | None = None) -> Caller | None:
    """The active token this is, or None; its use recorded (at most once per ``LAST_USED_EVERY``)."""
    if not token.startswith(TOKEN_START):
        return None
    given = token_hash(token)
    candidates = session.exec(
        select(ApiToken).where(ApiToken.prefix == token[:PREFIX_LENGTH], col(ApiToken.revoked_at).is_(None))
    )
    row = next((r for r in candidates if hmac.compare_digest(r.token_hash, given)), None)
    if row is None:
        return None
    now = now or utcnow()
    # One conditional UPDATE: parallel requests write it once, and within the minute not at all.
    session.execute(
        sa.update(ApiToken)
        .where(
            col(ApiToken.id) == row.id,
            sa.or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) < now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
    )
    return Caller(saved_id(row), row.name, tuple(row.scopes))
