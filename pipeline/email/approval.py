"""Approving an issue is gated by its email: it is rendered and linted first, and an issue whose email would
hurt readers (lint errors) is never approved."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from pipeline.config import Settings
from pipeline.content.editing import schedule
from pipeline.email.lint import Lint
from pipeline.email.render import render_issue
from pipeline.errors import RenderError
from pipeline.store.models import Issue


def approve(
    session: Session, issue: Issue, settings: Settings, at: datetime | None = None, revision: int | None = None
) -> Lint:
    """Lint, then approve (and schedule): an issue that would hurt readers is never approved.
    Returns the lint, whose warnings the caller shows."""
    lint = render_issue(session, issue, settings).lint
    if lint.errors:
        raise RenderError(f"issue {issue.id} cannot be approved: " + "; ".join(lint.errors))
    schedule(session, issue, at, revision)
    return lint
