"""Ship/skip splits: the panel's verdicts and the community's votes on each tool of a comparison, as the
emails, the web pages and `comparisons list` show them."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.store.models import Comparison, Tool


@dataclass(frozen=True)
class Split:
    """A ship/skip split; ``pct`` is None when nobody has a say yet ("—")."""

    ship: int
    skip: int

    @property
    def total(self) -> int:
        return self.ship + self.skip

    @property
    def pct(self) -> int | None:
        return round(100 * self.ship / self.total) if self.total else None

    def label(self) -> str:
        return "—" if self.pct is None else f"{self.pct}%"


def panel_split(comparison: Comparison, tool: Tool) -> Split:
    verdicts = [r.verdict for r in comparison.reviews if r.tool_slug == tool.slug]
    return Split(verdicts.count("ship"), verdicts.count("skip"))


def community_split(tool: Tool, reader_votes: tuple[int, int] = (0, 0)) -> Split:
    """Imported community votes plus readers' votes from the email (``votes.reader_votes``)."""
    return Split((tool.community_ship or 0) + reader_votes[0], (tool.community_skip or 0) + reader_votes[1])
