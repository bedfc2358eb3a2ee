"""The comparison import format, as the site exports it (see DESIGN.md, "Comparison import format"): the
pydantic models a file's records are validated with, field by field, before anything is written.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    NonNegativeInt,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

from pipeline.content.safe_text import one_line, paragraphs

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
#: What a pattern means, for the error: the regular expression itself helps nobody who writes the file.
PATTERN_RULES = {
    SLUG_PATTERN: "must be lowercase letters and digits, words joined by single hyphens (e.g. claude-vs-mistral)"
}

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(paragraphs)]
Line = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(one_line)]
OneLine = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(one_line)]
#: As long as the columns hold (a longer one was a database error on PostgreSQL, after every check had passed).
Link = Annotated[HttpUrl, UrlConstraints(max_length=2000)]


class FieldError(ValueError):
    """A record's problem found across its fields: names the field (``tools[1].url``), so an error lists it apart
    (pydantic keeps the exception as the error's ``ctx["error"]``); its text is ``field: detail``, as ever."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


#: A ``%`` that does not start a URL escape (``%20``): no valid URL has one, and providers fill ``%name%`` in.
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _link(url: HttpUrl, field: str) -> None:
    """A link readers click as it is written: https, and nothing a provider would fill in per reader."""
    text = str(url)
    if url.scheme != "https":
        raise FieldError(field, f"{text!r} must be an https:// link, not {url.scheme}://")
    if _BARE_PERCENT.search(text):
        raise FieldError(
            field,
            f"{text!r} has a % that does not start an escape such as %20: write a literal % "
            "as %25 (email providers fill in %…% with each reader's private data)",
        )
    if "@@" in text:
        raise FieldError(
            field, f"{text!r} contains '@@', which marks a reader's private link in our emails: write @ as %40"
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
    url: Link | None = None
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
    url: Link
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
            raise FieldError("tools", f"two tools share a slug ({', '.join(slugs)})")
        for i, review in enumerate(self.reviews):
            if review.tool not in slugs:
                raise FieldError(
                    f"reviews[{i}].tool",
                    f"{review.tool!r} is not a tool of this comparison (one of: {', '.join(slugs)})",
                )
        if not self.title:
            self.title = " vs ".join(t.name for t in self.tools)
        return self
