"""Line-ups: the order of an issue's comparisons for one reader, from the interests they picked.

No interests (the default): the issue's own order. With interests, the comparisons whose tools' categories
match come first, each group in the issue's order; with "only my interests", only those, unless none match,
then the whole issue as everyone gets it (never an empty email). A line-up is a tuple of comparison ids:
hashable, so a send renders each distinct one once and shares it between every reader who has it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from pipeline.store.models import Comparison, saved_id

#: The comparisons' ids, in the order one reader gets them.
LineUp = tuple[int, ...]
#: One comparison as line-ups see it: its id and its tools' categories, case-folded.
Entry = tuple[int, frozenset[str]]


def entries(comparisons: Sequence[Comparison]) -> tuple[Entry, ...]:
    return tuple((saved_id(c), frozenset(t.category.strip().casefold() for t in c.tools)) for c in comparisons)


def lineup_for(issue: Sequence[Entry], interests: Iterable[str], only: bool = False) -> LineUp:
    """One reader's line-up (see the module's docstring); matching ignores case and surrounding spaces."""
    wanted = {name.strip().casefold() for name in interests}
    matching = [cid for cid, categories in issue if categories & wanted]
    if only and matching:
        return tuple(matching)
    rest = [cid for cid, categories in issue if not categories & wanted]
    return tuple(matching + rest)


class Lineups:
    """One issue's line-ups, each reader's worked out once per distinct choice of interests: a send asks for
    every reader's, and readers share a handful of choices (memory: one entry per choice present)."""

    def __init__(self, comparisons: Sequence[Comparison]) -> None:
        self.issue = entries(comparisons)
        self.issue_order: LineUp = tuple(cid for cid, _ in self.issue)
        self._known: dict[tuple[tuple[str, ...], bool], LineUp] = {}
        self._stored: dict[tuple[str | None, bool | None], LineUp] = {}

    def of(self, interests: Sequence[str], only: bool) -> LineUp:
        key = (tuple(interests), only and bool(interests))  # "only" without interests is everything
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = lineup_for(self.issue, interests, only)
        return found

    def of_stored(self, interests: str | None, only: bool | None) -> LineUp:
        """``of`` for the column as the database holds it (JSON text; None for a reader erased since): a send
        looks a reader up by the text as it comes, and reads each distinct text once."""
        key = (interests, only)
        found = self._stored.get(key)
        if found is None:
            found = self._stored[key] = self.of(_names(interests), bool(only))
        return found


def _names(stored: str | None) -> list[str]:
    """The stored interests; anything but a list of names (never written by us) is no interests: everything."""
    try:
        names = json.loads(stored or "[]")
    except ValueError:
        return []
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else []


def in_lineup(comparisons: Sequence[Comparison], lineup: LineUp | None) -> list[Comparison]:
    """``comparisons`` in ``lineup``'s order and selection (None: as they are)."""
    if lineup is None:
        return list(comparisons)
    by_id = {saved_id(c): c for c in comparisons}
    return [by_id[cid] for cid in lineup]
