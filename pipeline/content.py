"""Comparison import (JSON/YAML, validated, all-or-nothing) and the panel/community figures."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    NonNegativeInt,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlmodel import Session, select

from pipeline.errors import InvalidInput
from pipeline.files import read_limited
from pipeline.models import Comparison, Review, Tool, utcnow

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
# Titles end up in a Subject header: no line breaks or other control characters.
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: What a pattern means, for the error: the regular expression itself helps nobody who writes the file.
PATTERN_RULES = {SLUG_PATTERN: "must be lowercase letters and digits, words joined by single hyphens (e.g. claude-vs-mistral)",
                 LINE_PATTERN: "must be one line: no line breaks or other control characters"}
#: Problems listed in one error; a file of many bad records says how many more there are.
SHOWN_PROBLEMS = 20

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, pattern=LINE_PATTERN)]


def _https(url: HttpUrl, field: str) -> str:
    if url.scheme != "https":
        raise ValueError(f"{field}: must be an https:// link, not {url.scheme}://")
    return str(url)


class VotesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ship: NonNegativeInt
    skip: NonNegativeInt


class ToolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Annotated[Text, Line, StringConstraints(max_length=200)]
    category: Annotated[Text, Line, StringConstraints(max_length=200)]
    tagline: Annotated[Text, Line, StringConstraints(max_length=500)]
    description: Text
    entry_price: Annotated[Text, Line, StringConstraints(max_length=100)]
    url: HttpUrl | None = None
    community_votes: VotesIn | None = None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: Slug
    reviewer: Annotated[Text, Line, StringConstraints(max_length=200)]
    lens: Annotated[Line, StringConstraints(max_length=200)] | None = None
    verdict: Literal["ship", "skip"]
    quote: Text


class ComparisonIn(BaseModel):
    """One comparison as the site exports it (see DESIGN.md, "Comparison import format")."""

    model_config = ConfigDict(extra="forbid")
    slug: Slug
    title: Annotated[Line, StringConstraints(max_length=300)] | None = None
    question: Annotated[Line, StringConstraints(max_length=500)] = ""
    published_at: AwareDatetime
    url: HttpUrl
    tools: list[ToolIn] = Field(min_length=2, max_length=4)
    reviews: list[ReviewIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "ComparisonIn":
        _https(self.url, "url")
        for i, tool in enumerate(self.tools):
            if tool.url is not None:
                _https(tool.url, f"tools[{i}].url")
        slugs = [t.slug for t in self.tools]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"tools: two tools share a slug ({', '.join(slugs)})")
        for i, review in enumerate(self.reviews):
            if review.tool not in slugs:
                raise ValueError(
                    f"reviews[{i}].tool: {review.tool!r} is not a tool of this comparison (one of: {', '.join(slugs)})"
                )
        if not self.title:
            self.title = " vs ".join(t.name for t in self.tools)
        return self


@dataclass(frozen=True)
class LoadedRecord:
    source: str
    index: int
    comparison: ComparisonIn


def _records(data: Any) -> list[Any]:
    if isinstance(data, dict) and set(data) == {"comparisons"}:
        data = data["comparisons"]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise ValueError("expected a comparison object, a list of them, or {\"comparisons\": [...]}")


def _record_name(raw: Any, index: int) -> str:
    slug = raw.get("slug") if isinstance(raw, dict) else None
    return f"record {index + 1}" + (f" ({slug})" if isinstance(slug, str) else "")


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for error in err.errors():
        where = ".".join(str(p) for p in error["loc"])
        msg = PATTERN_RULES.get((error.get("ctx") or {}).get("pattern"), error["msg"].removeprefix("Value error, "))
        problems.append(f"{where}: {msg}" if where else msg)
    return problems


def _refusal(path: Path, problems: list[str]) -> InvalidInput:
    """Every problem of the file at once (up to SHOWN_PROBLEMS): fixing them one import at a time took as many tries."""
    if len(problems) == 1:
        return InvalidInput(f"{path}: {problems[0]}")
    more = f"\n  … and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    return InvalidInput(f"{path}: {len(problems)} problems, so nothing was imported:\n  " + "\n  ".join(problems[:SHOWN_PROBLEMS]) + more)


def load_file(path: Path, max_mb: float | None = None) -> list[LoadedRecord]:
    """Parse and validate one file; the error names the file, the record and the field.
    A file over ``max_mb`` (VERDICTS_IMPORT_MAX_MB) is refused before it is read."""
    raw = read_limited(path, max_mb, "IMPORT_MAX_MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: cannot read the file ({exc})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        detail = str(exc).replace("\n", " ")
        raise InvalidInput(f"{path}: not valid {kind}: {detail}") from None
    try:
        raws = _records(data)
    except ValueError as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    loaded, problems = [], []
    for i, raw in enumerate(raws):
        if not isinstance(raw, dict):
            problems.append(f"{_record_name(raw, i)}: expected an object, got {type(raw).__name__}")
            continue
        try:
            loaded.append(LoadedRecord(str(path), i, ComparisonIn.model_validate(raw)))
        except ValidationError as exc:
            problems += [f"{_record_name(raw, i)}: {problem}" for problem in _problems(exc)]
    if problems:
        raise _refusal(path, problems)
    return loaded


def load_files(paths: Sequence[Path], max_mb: float | None = None) -> list[ComparisonIn]:
    """Validate every file before anything is written; a slug twice in one import is an error."""
    seen: dict[str, LoadedRecord] = {}
    for path in paths:
        for rec in load_file(path, max_mb):
            slug = rec.comparison.slug
            if slug in seen:
                first = seen[slug]
                raise InvalidInput(
                    f"{rec.source}: record {rec.index + 1} ({slug}): slug already used by "
                    f"{first.source} record {first.index + 1}; slugs must be unique"
                )
            seen[slug] = rec
    return [rec.comparison for rec in seen.values()]


def upsert(session: Session, items: Iterable[ComparisonIn]) -> tuple[int, int]:
    """Insert new slugs, update known ones in place; returns (created, updated)."""
    created = updated = 0
    for item in items:
        row = session.exec(select(Comparison).where(Comparison.slug == item.slug)).first()
        if row is None:
            row = Comparison(slug=item.slug, title="", url="", published_at=item.published_at)
            session.add(row)
            created += 1
        else:
            updated += 1
        row.title = item.title or ""
        row.question = item.question
        row.url = str(item.url)
        row.published_at = item.published_at
        row.updated_at = utcnow()
        # Tools are updated by slug so their ids (and later, reader votes) survive a re-import.
        by_slug = {t.slug: t for t in row.tools}
        row.tools = [_tool(by_slug.get(t.slug), t, pos) for pos, t in enumerate(item.tools)]
        row.reviews = [
            Review(tool_slug=r.tool, position=pos, reviewer=r.reviewer, lens=r.lens or None, verdict=r.verdict, quote=r.quote)
            for pos, r in enumerate(item.reviews)
        ]
    session.flush()
    return created, updated


def _tool(row: Tool | None, item: ToolIn, position: int) -> Tool:
    row = row or Tool(comparison_id=0, position=position, slug=item.slug, name="", category="", tagline="", description="", entry_price="")
    row.position = position
    row.name, row.category, row.tagline = item.name, item.category, item.tagline
    row.description, row.entry_price = item.description, item.entry_price
    row.url = str(item.url) if item.url else None
    votes = item.community_votes
    row.community_ship, row.community_skip = (votes.ship, votes.skip) if votes else (None, None)
    return row


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


def list_comparisons(session: Session, since: datetime | None = None) -> list[Comparison]:
    query = select(Comparison).order_by(Comparison.published_at.desc())
    if since is not None:
        query = query.where(Comparison.published_at >= since)
    return list(session.exec(query))
