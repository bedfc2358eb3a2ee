"""Comparison import (JSON/YAML, validated, all-or-nothing) and the panel/community figures."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml  # type: ignore[import-untyped]  # no stubs in the test extra (types-PyYAML would do)
from pydantic import (
    AfterValidator,
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
from sqlmodel import Session, col, select

from pipeline.errors import InvalidInput
from pipeline.files import read_limited
from pipeline.store.models import Comparison, Review, Tool, utcnow

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
#: What a pattern means, for the error: the regular expression itself helps nobody who writes the file.
PATTERN_RULES = {
    SLUG_PATTERN: "must be lowercase letters and digits, words joined by single hyphens (e.g. claude-vs-mistral)"
}
#: Problems listed in one error; a file of many bad records says how many more there are.
SHOWN_PROBLEMS = 20

#: Bidirectional embeddings, overrides and isolates make text display in another order than it is written:
#: a subject or a tool name that reads differently in the inbox ("Trojan Source", CVE-2021-42574), and an
#: unclosed one reorders what follows it on the line. Right-to-left text needs none of them (the marks
#: U+200E/U+200F stay allowed); zero-width joiners stay too (emoji sequences, Persian).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Line breaks multi-line text may use, as the newline (or blank line) they mean.
LINE_BREAKS = re.compile("\r\n?|[\u2028\x85]|(\u2029)")
#: Names of the controls Unicode leaves unnamed, for the error.
CONTROL_NAMES = {
    "\t": "CHARACTER TABULATION",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x00": "NULL",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
}


def char_name(ch: str) -> str:
    """``U+2028 LINE SEPARATOR``: the character an error is about, which the eye cannot see."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, CONTROL_NAMES.get(ch, 'CONTROL CHARACTER'))}"


#: Characters no single-line text may hold: controls (C0, DEL, C1), the line and paragraph separators, bidi
#: controls and lone surrogates. One class, so a reader's header values are checked in a fraction of a microsecond.
SINGLE_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: The same for multi-line text, whose line breaks are normalised to "\n" first: "\n" and "\t" may stay.
MULTI_LINE_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _fix(ch: str) -> str:
    """Why ``ch`` is refused, and what to do instead."""
    if ch in BIDI_CONTROLS:
        return "it makes the text display in another order than it is written: remove it"
    if unicodedata.category(ch) == "Cs":
        return "it is half of a character (a broken \\ud800-style escape): write the character itself"
    if ch in "\t\n\r\x85\u2028\u2029":
        return "this text goes into one line (a subject, a header, a heading): replace it with a space"
    return "control characters break email: remove it"


def text_problem(value: str, *, single_line: bool) -> str | None:
    """What is wrong with ``value`` for a provider and a reader's mail client, quoting where; None if nothing.
    Every character that reaches a header or a line of the email is checked, not only ASCII's controls."""
    found = (SINGLE_LINE_REFUSED if single_line else MULTI_LINE_REFUSED).search(value)
    if found is None:
        return None
    index, ch = found.start(), found.group()
    near = value[max(0, index - 20) : index + 20]
    return f"{near!r} contains {char_name(ch)} (character {index + 1}): {_fix(ch)}"


def one_line(value: str) -> str:
    """Validator of single-line text: titles, names, subjects (they end up in headers)."""
    if (problem := text_problem(value, single_line=True)) is not None:
        raise ValueError(problem)
    return value


def paragraphs(value: str) -> str:
    """Validator of multi-line text: Unicode's line and paragraph separators become the newlines they mean
    (mail clients and Markdown know only those); other controls are refused."""
    value = LINE_BREAKS.sub(lambda m: "\n\n" if m.group(1) else "\n", value)
    if (problem := text_problem(value, single_line=False)) is not None:
        raise ValueError(problem)
    return value


#: Where email providers substitute per reader (Mailgun ``%recipient.x%``, ``%unsubscribe_url%``; SendGrid
#: ``<%asm_…%>`` and ``<% %>``; Postmark, Resend, SES ``{{ }}``/``{{{ }}}``) and our own ``@@slot@@``. A ``%``
#: before two hex digits is a URL's escape, and no provider's tag name starts with two hex digits.
MERGE_SYNTAX = re.compile(r"@(?=@)|%(?![0-9A-Fa-f]{2})|\{(?=\{)|\}(?=\})")


def inert(text: str) -> str:
    """``text`` shown as written and never filled in by a provider: a zero-width space after each character
    that could open or close a merge tag (invisible; valid URLs have none, see ``_link``)."""
    return MERGE_SYNTAX.sub(lambda m: m.group(0) + "\u200b", text)


Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(paragraphs)]
Line = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(one_line)]
OneLine = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(one_line)]


#: A ``%`` that does not start a URL escape (``%20``): no valid URL has one, and providers fill ``%name%`` in.
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _link(url: HttpUrl, field: str) -> None:
    """A link readers click as it is written: https, and nothing a provider would fill in per reader."""
    text = str(url)
    if url.scheme != "https":
        raise ValueError(f"{field}: {text!r} must be an https:// link, not {url.scheme}://")
    if _BARE_PERCENT.search(text):
        raise ValueError(
            f"{field}: {text!r} has a % that does not start an escape such as %20: write a literal % "
            "as %25 (email providers fill in %…% with each reader's private data)"
        )
    if "@@" in text:
        raise ValueError(
            f"{field}: {text!r} contains '@@', which marks a reader's private link in our emails: write @ as %40"
        )


class VotesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ship: NonNegativeInt
    skip: NonNegativeInt


class ToolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Annotated[OneLine, StringConstraints(max_length=200)]
    category: Annotated[OneLine, StringConstraints(max_length=200)]
    tagline: Annotated[OneLine, StringConstraints(max_length=500)]
    description: Text
    entry_price: Annotated[OneLine, StringConstraints(max_length=100)]
    url: HttpUrl | None = None
    community_votes: VotesIn | None = None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: Slug
    reviewer: Annotated[OneLine, StringConstraints(max_length=200)]
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
    def _consistent(self) -> ComparisonIn:
        _link(self.url, "url")
        for i, tool in enumerate(self.tools):
            if tool.url is not None:
                _link(tool.url, f"tools[{i}].url")
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
    if isinstance(data, list) and data:
        return data
    found = "an empty list" if isinstance(data, list) else f"{type(data).__name__} {_quote(data)}"
    raise ValueError(
        f'expected a comparison object, a list of them, or {{"comparisons": [...]}}; found {found}, '
        "so there is nothing to import"
    )


def _record_name(raw: Any, index: int) -> str:
    slug = raw.get("slug") if isinstance(raw, dict) else None
    return f"record {index + 1}" + (f" ({slug})" if isinstance(slug, str) else "")


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


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for error in err.errors():
        where, msg = field_path(error["loc"]), _message(error)
        problems.append(f"{where}: {msg}" if where else msg)
    return problems


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
    session.flush()
    return created, updated


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
    query = select(Comparison).order_by(col(Comparison.published_at).desc())
    if since is not None:
        query = query.where(col(Comparison.published_at) >= since)
    return list(session.exec(query))
