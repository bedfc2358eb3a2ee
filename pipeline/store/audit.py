"""The audit trail: who changed what, when, at which issue revision; append-only and tamper-evident.

``record`` is called in the transaction of the change it describes (the caller's session), so a change is never
unaudited and a rolled-back change leaves no entry. Each entry stores ``sha256(previous hash + its canonical
JSON)``; ``verify`` walks the chain and names the first entry that was edited, deleted or inserted by hand. The
app has no function that updates or deletes an entry.

Writers take turns on the one-row ``audit_head`` table: its UPDATE comes first, so a second writer waits there
(PostgreSQL: the row lock; SQLite: the write lock) and then reads the hash the first one committed: two
transactions cannot both append to the same entry and fork the chain.

Actions (``action``), by what they are about:

- issue: ``issue.build``, ``issue.edit`` (the words before and after), ``issue.reorder`` (the order before and
  after), ``issue.drop``, ``issue.approve``, ``issue.schedule``, ``issue.unapprove``, ``issue.cancel`` (a
  scheduled send taken back), ``issue.send``, ``issue.resume`` (a paused send started again),
  ``issue.test_send``, ``issue.comment``, ``issue.send_now``;
- accounts: ``account.add``, ``account.role``, ``account.disable``, ``account.reset``, ``account.reset_2fa``,
  ``account.totp`` (a second factor set up);
- the site: ``api_token.create``, ``api_token.revoke`` (name and prefix, never the secret), ``webhook.retry``;
- readers, by an operator: ``subscriber.suppress``, ``subscriber.unsubscribe``, ``subscriber.erase`` (the detail
  holds the masked address and its hash, never the address);
- content: ``comparisons.import`` (from a file, or by the site's API token).

Actors: ``pipeline.web.pages.actor_of`` on the web, ``cli:<OS user>`` on the command line, ``api:<token name>``
for the site's API, ``SCHEDULER`` for the scheduler. A provider's webhook is nobody's decision: its suppression
is in the consent records instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select, update

from pipeline.store.db import insert_ignoring_duplicates
from pipeline.store.models import AuditEntry, AuditHead, Issue, utcnow

#: The actor of what the scheduler does by itself (the weekly build, an approval without an editor, its sends).
SCHEDULER = "scheduler"
#: The hash the first entry chains to.
GENESIS = "0" * 64
PAGE = 500


def canonical(value: object) -> str:
    """One text for one value: sorted keys, no spaces, any date or other object as its ``str``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(previous: str, entry: AuditEntry) -> str:
    """The hash an entry must carry: its fields (the detail as stored) chained to the entry before it."""
    fields = {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "issue_id": entry.issue_id,
        "issue_revision": entry.issue_revision,
        "detail": entry.detail,
    }
    return hashlib.sha256((previous + canonical(fields)).encode()).hexdigest()


def record(
    session: Session, actor: str, action: str, *, issue: Issue | None = None, detail: dict[str, object] | None = None
) -> AuditEntry:
    """Append one entry in the caller's transaction (committed or rolled back with the change it describes)."""
    # Created by the first entry (a seeded row would stop `database copy` into a new database).
    session.execute(insert_ignoring_duplicates(session, AuditHead), {"id": 1, "entries": 0, "hash": GENESIS})
    # The UPDATE before any read: it makes every other writer wait here until this transaction ends.
    session.exec(update(AuditHead).values(entries=AuditHead.entries + 1).execution_options(synchronize_session=False))
    count, previous = _head(session)
    entry = AuditEntry(
        id=count,
        at=utcnow(),
        actor=actor[:200],
        action=action,
        issue_id=issue.id if issue else None,
        issue_revision=issue.revision if issue else None,
        detail=canonical(detail or {}),
    )
    entry.hash = entry_hash(previous, entry)
    session.add(entry)
    session.exec(update(AuditHead).values(hash=entry.hash).execution_options(synchronize_session=False))
    session.flush()
    return entry


def _head(session: Session) -> tuple[int, str]:
    """How many entries were written, and the last one's hash."""
    row = session.exec(select(AuditHead.entries, AuditHead.hash)).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def entries(
    session: Session, issue_id: int | None = None, since: datetime | None = None, *, newest: int | None = None
) -> Iterator[AuditEntry]:
    """The entries (of one issue, since a moment), oldest first; or the ``newest`` few, newest first."""
    query = select(AuditEntry)
    if issue_id is not None:
        query = query.where(col(AuditEntry.issue_id) == issue_id)
    if since is not None:
        query = query.where(col(AuditEntry.at) >= since)
    if newest is not None:
        yield from session.exec(query.order_by(col(AuditEntry.id).desc()).limit(newest))
        return
    last = 0
    while True:  # a page at a time, by id: a long trail is never one result in memory
        page = session.exec(query.where(col(AuditEntry.id) > last).order_by(col(AuditEntry.id)).limit(PAGE)).all()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1].id or 0


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: how many entries, the last hash (to note down elsewhere), the first break."""

    checked: int
    head: str
    broken: str | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(session: Session) -> Verdict:
    """Walk the chain from the first entry: the first one whose id, hash or link does not hold is named."""
    previous, expected = GENESIS, 1
    for entry in entries(session):
        if entry.id != expected:
            why = "is missing (deleted)" if (entry.id or 0) > expected else "is out of sequence"
            return Verdict(expected - 1, previous, f"entry {expected} {why}: the chain breaks before entry {entry.id}")
        if entry.hash != entry_hash(previous, entry):
            return Verdict(
                expected - 1,
                previous,
                f"entry {entry.id} ({entry.at:%Y-%m-%d %H:%M:%S} UTC, {entry.action}) was "
                "changed after it was written: its hash does not match its contents and the entry before it",
            )
        previous, expected = entry.hash, expected + 1
    count = expected - 1
    recorded, head_hash = _head(session)
    if (recorded, head_hash) != (count, previous):
        return Verdict(
            count,
            previous,
            f"the trail ends at entry {count} but {recorded} were written: the last "
            f"{recorded - count} entr{'y was' if recorded - count == 1 else 'ies were'} deleted"
            if recorded > count
            else f"the head of the trail does not match entry {count}: it was changed by hand",
        )
    return Verdict(count, previous, None)


def holds(session: Session, noted: str) -> bool:
    """Whether an entry carries ``noted``, a last hash printed by an earlier ``verify`` and kept elsewhere: a chain
    rewritten whole (every hash computed again) verifies, but has lost the hashes noted before."""
    return noted == GENESIS or session.exec(select(AuditEntry.id).where(AuditEntry.hash == noted)).first() is not None
