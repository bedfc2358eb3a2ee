"""An issue's change and its audit entry in one transaction: what the entry says changed is read from the issue
before and after, not told by each caller (the editor's routes and the CLI's commands share this)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum

from sqlmodel import Session

from pipeline.content.issues import BuildResult, issue_comparisons
from pipeline.store import audit
from pipeline.store.models import AuditEntry, Issue

#: What an entry compares: the words readers see, the state, the send time (the revision has its own column).
FIELDS = ("subject", "preheader", "intro", "status", "scheduled_for")


def snapshot(session: Session, issue: Issue) -> dict[str, object]:
    """The issue as an entry describes it: its words, state, send time and line-up (comparison slugs, in order)."""
    state: dict[str, object] = {f: _plain(getattr(issue, f)) for f in FIELDS}
    state["comparisons"] = [c.slug for c in issue_comparisons(session, issue)]
    return state


def _plain(value: object) -> object:
    """A value as JSON holds it: an enum by its value, a moment in ISO 8601."""
    if isinstance(value, Enum):
        return value.value
    return value.isoformat() if isinstance(value, datetime) else value


def changes(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """``{field: {"before": …, "after": …}}`` for each field that differs."""
    return {k: {"before": before[k], "after": after[k]} for k in before if before[k] != after.get(k)}


@contextmanager
def audited(session: Session, actor: str, action: str, issue: Issue, **extra: object) -> Iterator[None]:
    """Record ``action`` on ``issue`` after the block, with what it changed (and ``extra``), in the block's
    transaction. A block that raises records nothing; one that changed nothing and has no ``extra`` to say (a draft
    "unapproved") neither."""
    revision, before = issue.revision, snapshot(session, issue)
    yield
    diff = changes(before, snapshot(session, issue))
    if diff or extra or issue.revision != revision:
        audit.record(session, actor, action, issue=issue, detail={**diff, **extra})


def unapproval(issue: Issue) -> str:
    """What taking an approval back is: cancelling a scheduled send, or unapproving one that waits for the next run."""
    return "issue.cancel" if issue.scheduled_for else "issue.unapprove"


def record_build(session: Session, actor: str, built: BuildResult) -> None:
    """The week's draft, when this build made it (building again finds the same one: nothing to record)."""
    if built.created and built.issue is not None:
        state = snapshot(session, built.issue)
        audit.record(session, actor, "issue.build", issue=built.issue, detail={"week": built.issue.week, **state})


def described(entry: AuditEntry) -> str:
    """What an entry's detail says, in one line for the issue page: each field's before → after, then the rest."""
    detail = json.loads(entry.detail)
    parts = []
    for field, value in detail.items():
        if isinstance(value, dict) and set(value) == {"before", "after"}:
            parts.append(f"{field}: {_shown(value['before'])} → {_shown(value['after'])}")
        elif entry.action != "issue.build" or field in ("week", "comparisons"):
            parts.append(f"{field}: {_shown(value)}")
    return "; ".join(parts)


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return "(none)" if value in (None, "") else repr(value) if isinstance(value, str) else str(value)
