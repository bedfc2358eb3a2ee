"""Comparison import: JSON/YAML files read, validated against the import format (`import_format`) with every
problem of a file reported at once, and written all-or-nothing; and the comparisons listed back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml  # type: ignore[import-untyped]  # no stubs in the test extra (types-PyYAML would do)
from pydantic import ValidationError
from sqlmodel import Session, SQLModel, col, select

from pipeline.content.import_format import PATTERN_RULES, ComparisonIn, FieldError, ToolIn
from pipeline.errors import InvalidInput, InvalidState
from pipeline.files import read_limited
from pipeline.store.models import Comparison, Issue, IssueItem, IssueStatus, Review, Tool, utcnow

#: Problems listed in one error; a file of many bad records says how many more there are.
SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class LoadedRecord:
    source: str
    index: int
    comparison: ComparisonIn


@dataclass(frozen=True)
class RecordProblem:
    """One problem of a file or body: its record (index from 0; None for the whole), the record's slug if it
    has one, the field (``tools[1].category``; "" for the record itself) and what is wrong with the fix."""

    record: int | None
    slug: str | None
    field: str
    detail: str

    def line(self) -> str:
        """As the command line writes it: ``record 2 (some-slug): tools[1].category: must not be empty``."""
        where = f"{self.field}: " if self.field else ""
        if self.record is None:
            return where + self.detail
        return f"record {self.record + 1}" + (f" ({self.slug})" if self.slug else "") + f": {where}{self.detail}"


def _records(data: Any) -> list[Any]:
    if isinstance(data, dict) and set(data) == {"comparisons"}:
        data = data["comparisons"]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and data:
        return data
    found = "an empty list" if isinstance(data, list) else f"{type(data).__name__} {_quote(data)}"
    raise ValueError(
        f'expected a comparison object, a list of them, or {{"comparisons": [...]}}; found {found}, '
        "so there is nothing to import"
    )


def _slug_of(raw: Any) -> str | None:
    slug = raw.get("slug") if isinstance(raw, dict) else None
    return slug if isinstance(slug, str) else None


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def field_path(loc: Sequence[int | str]) -> str:
    """``comparisons[2].reviews[0].verdict`` style, the one way every error writes a field."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


#: What a pydantic error type means, in our words; ``{value}`` is the quoted input, ``{ctx}`` its details.
MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of the import format: remove it, or check its spelling",
    "literal_error": "must be {expected}, not {value}",
    "string_type": "must be text, not {value}",
    "string_too_short": "must not be empty",
    "string_too_long": "is {length} characters, over the limit of {max_length}: shorten it",
    "too_short": "needs at least {min_length} items, found {actual_length}",
    "too_long": "takes at most {max_length} items, found {actual_length}",
    "timezone_aware": "{value} needs a time zone, e.g. 2026-11-20T09:00:00+00:00 or …Z",
    "int_parsing": "must be a whole number, not {value}",
    "int_type": "must be a whole number, not {value}",
    "greater_than_equal": "must be {ge} or more, not {value}",
    "url_parsing": "{value} is not a link: write it as https://…",
    "url_type": "{value} is not a link: write it as https://…",
    "url_too_long": "is {length} characters, over the limit of {max_length}: shorten the link",
    "model_type": "must be an object of fields, not {value}",
    "model_attributes_type": "must be an object of fields, not {value}",
    "list_type": "must be a list, not {value}",
}


def _message(error: Any) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in ("too_short", "too_long") and isinstance(value, str):  # a length checked after our validators
        kind = f"string_{kind}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_RULES:
        return f"{_quote(value)} {PATTERN_RULES[ctx['pattern']]}"
    if kind.startswith(("datetime", "date_")):
        return f"{_quote(value)} is not a date and time: write it as 2026-11-20T09:00:00+00:00"
    template = MESSAGES.get(kind)
    if template is None:
        return f"{error['msg']} (found {_quote(value)})"
    length = len(value) if isinstance(value, str) else 0
    return template.format(value=_quote(value), length=length, **ctx)


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    """(field, what is wrong) of each error; a record-wide check's ``FieldError`` names its own field."""
    problems = []
    for error in err.errors():
        found = (error.get("ctx") or {}).get("error")
        if isinstance(found, FieldError) and not error["loc"]:
            problems.append((found.field, found.detail))
        else:
            problems.append((field_path(error["loc"]), _message(error)))
    return problems


def checked_records(raws: list[Any]) -> tuple[list[ComparisonIn], list[RecordProblem]]:
    """Each record validated against the import format: the valid ones, and every problem of the others."""
    valid, problems = [], []
    for i, raw in enumerate(raws):
        if not isinstance(raw, dict):
            problems.append(RecordProblem(i, None, "", f"expected an object, got {type(raw).__name__}"))
            continue
        try:
            valid.append(ComparisonIn.model_validate(raw))
        except ValidationError as exc:
            problems += [RecordProblem(i, _slug_of(raw), where, msg) for where, msg in _problems(exc)]
    return valid, problems


def comparisons_in(data: Any) -> tuple[list[ComparisonIn], list[RecordProblem]]:
    """Parsed JSON as the API takes it (a comparison, a list of them, or ``{"comparisons": [...]}``), checked as a
    file's records are: the comparisons, or every problem, a slug used twice among them included."""
    try:
        raws = _records(data)
    except ValueError as exc:
        return [], [RecordProblem(None, None, "", str(exc))]
    valid, problems = checked_records(raws)
    first: dict[str, int] = {}
    for i, slug in enumerate(map(_slug_of, raws)):
        if slug is not None and first.setdefault(slug, i) != i:
            problems.append(RecordProblem(i, slug, "slug", f"record {first[slug]} has it too; slugs must be unique"))
    return valid, problems


def _refusal(path: Path, problems: list[str]) -> InvalidInput:
    """Every problem of the file at once (up to SHOWN_PROBLEMS): fixing them one import at a time took as many tries."""
    if len(problems) == 1:
        return InvalidInput(f"{path}: {problems[0]}")
    more = f"\n  … and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    return InvalidInput(
        f"{path}: {len(problems)} problems, so nothing was imported:\n  "
        + "\n  ".join(problems[:SHOWN_PROBLEMS])
        + more
    )


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
    valid, problems = checked_records(raws)
    if problems:
        raise _refusal(path, [problem.line() for problem in problems])
    return [LoadedRecord(str(path), i, item) for i, item in enumerate(valid)]


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
            row = _new_row(item)
            session.add(row)
            created += 1
        else:
            updated += 1
        _fill(row, item)
    session.flush()
    return created, updated


class Outcome(StrEnum):
    added = "added"
    updated = "updated"
    unchanged = "unchanged"


def save(session: Session, items: Iterable[ComparisonIn]) -> dict[str, Outcome]:
    """Each comparison by slug: added, updated, or ``unchanged`` when it holds what is stored already, and then
    not written at all (not even ``updated_at``): sending the same comparisons again changes nothing."""
    outcomes, changed = {}, []
    for item in items:
        row = session.exec(select(Comparison).where(Comparison.slug == item.slug)).first()
        if row is None:
            outcomes[item.slug] = Outcome.added
        elif _stored(row) == _stored(_fill(_new_row(item), item)):
            outcomes[item.slug] = Outcome.unchanged
            continue
        else:
            _not_signed_off(session, row)
            outcomes[item.slug] = Outcome.updated
        changed.append(item)
    upsert(session, changed)
    return outcomes


class ComparisonLocked(InvalidState):
    """A changed comparison that an approved (or sending) issue holds: its words were signed off as they are."""


#: An issue in these states was signed off as it is: its comparisons change only after it is a draft again.
_SIGNED_OFF = (IssueStatus.approved, IssueStatus.sending, IssueStatus.paused)


def _not_signed_off(session: Session, row: Comparison) -> None:
    issue = session.exec(
        select(Issue).join(IssueItem, col(IssueItem.issue_id) == Issue.id).where(IssueItem.comparison_id == row.id)
    ).first()
    if issue is not None and issue.status in _SIGNED_OFF:
        raise ComparisonLocked(
            f"comparison {row.slug!r} is in issue {issue.id}, which is {issue.status.value}: its words were signed "
            f"off as they are. Nothing was imported. Send it back to a draft first (`verdicts issue unapprove "
            f"{issue.id}`, or Cancel in the editor), then import again"
        )


#: Columns that record where a row is, or when it was written: not what the comparison says.
_BOOKKEEPING = frozenset({"id", "comparison_id", "imported_at", "updated_at"})


def _stored(row: Comparison) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """What a comparison says, column by column (its tools' and reviews' too): the same for two rows filled
    from the same record, a stored one and a new one alike."""
    return _columns(row), [_columns(t) for t in row.tools], [_columns(r) for r in row.reviews]


def _columns(row: SQLModel) -> dict[str, Any]:
    return {a.key: getattr(row, a.key) for a in sa.inspect(type(row)).column_attrs if a.key not in _BOOKKEEPING}


def _new_row(item: ComparisonIn) -> Comparison:
    return Comparison(slug=item.slug, title="", url="", published_at=item.published_at)


def _fill(row: Comparison, item: ComparisonIn) -> Comparison:
    """Write the record into the row: the one way a comparison's columns are set from the import format."""
    row.title = item.title or ""
    row.question = item.question
    row.url = str(item.url)
    row.published_at = item.published_at
    row.updated_at = utcnow()
    # Tools are updated by slug so their ids (and later, reader votes) survive a re-import.
    by_slug = {t.slug: t for t in row.tools}
    row.tools = [_tool(by_slug.get(t.slug), t, pos) for pos, t in enumerate(item.tools)]
    row.reviews = [
        Review(
            comparison_id=0,  # set from ``row.reviews`` at the flush, as for tools
            tool_slug=r.tool,
            position=pos,
            reviewer=r.reviewer,
            lens=r.lens or None,
            verdict=r.verdict,
            quote=r.quote,
        )
        for pos, r in enumerate(item.reviews)
    ]
    return row


def _tool(row: Tool | None, item: ToolIn, position: int) -> Tool:
    row = row or Tool(
        comparison_id=0,
        position=position,
        slug=item.slug,
        name="",
        category="",
        tagline="",
        description="",
        entry_price="",
    )
    row.position = position
    row.name, row.category, row.tagline = item.name, item.category, item.tagline
    row.description, row.entry_price = item.description, item.entry_price
    row.url = str(item.url) if item.url else None
    votes = item.community_votes
    row.community_ship, row.community_skip = (votes.ship, votes.skip) if votes else (None, None)
    return row


def list_comparisons(session: Session, since: datetime | None = None) -> list[Comparison]:
    query = select(Comparison).order_by(col(Comparison.published_at).desc())
    if since is not None:
        query = query.where(col(Comparison.published_at) >= since)
    return list(session.exec(query))
