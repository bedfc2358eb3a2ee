"""Editions: a send's rendered bodies, one per distinct line-up (``content.lineups``), not one per reader.

Readers share a handful of line-ups (one per choice of interests present), so a send renders each the first
time a reader needs it and keeps it for the rest: memory is at most the line-ups present, and render once
survives personal line-ups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.content.lineups import LineUp, Lineups
from pipeline.email.render import RenderedIssue
from pipeline.store.models import Comparison


class Editions:
    """Each line-up's rendered body, rendered by ``render`` on first use. ``first``: one rendered already
    (the issue's own order, which the send lints first). ``checked``: the line-ups whose every copy the
    preflight built; the send checks any other before its first message leaves."""

    def __init__(
        self,
        comparisons: Sequence[Comparison],
        render: Callable[[LineUp], RenderedIssue],
        first: RenderedIssue | None = None,
    ) -> None:
        self.lineups = Lineups(comparisons)
        self._render = render
        self._rendered: dict[LineUp, RenderedIssue] = {} if first is None else {first.lineup: first}
        self.checked: set[LineUp] = set()

    def get(self, lineup: LineUp) -> RenderedIssue:
        found = self._rendered.get(lineup)
        if found is None:
            found = self._rendered[lineup] = self._render(lineup)
        return found

    @property
    def issue(self) -> RenderedIssue:
        """The issue in its own order: what the editor approved, and what a reader with no interests gets."""
        return self.get(self.lineups.issue_order)

    def __len__(self) -> int:
        return len(self._rendered)
