"""Bodies cut at their per-reader slots: the shape every provider receives a message in.

A body is rendered once per send; each reader's copy is one join of its literal parts
with that reader's values. Providers that merge on their side (Mailgun, SendGrid) fill
the slots with their own markers instead and send the body once per request.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import orjson

from pipeline.errors import RenderError

#: ``vote_url`` is the reader's voting link for the issue; the template adds ``/<tool>/<verdict>``.
PERSONAL_FIELDS = ("name", "unsubscribe_url", "preferences_url", "vote_url")
#: The one free-text slot; every other value is a signed URL that never changes under HTML
#: escaping (BASE_URL is checked for it), so only this one needs escaping or an escaped twin.
FREE_TEXT = frozenset({"name"})
PLACEHOLDER = re.compile(r"@@([a-z0-9_]+)@@")


class PersonalTemplate:
    """A rendered body cut at its ``@@field@@`` placeholders, so one reader's copy is a single join."""

    def __init__(self, body: str) -> None:
        pieces = PLACEHOLDER.split(body)
        unknown = set(pieces[1::2]) - set(PERSONAL_FIELDS)
        if unknown:
            raise RenderError(f"template uses unknown personal field(s): {', '.join(sorted(unknown))}")
        self.literals = pieces[0::2]
        self.fields = pieces[1::2]
        self.base_length = sum(len(p.encode()) for p in self.literals)

    @classmethod
    def literal(cls, body: str) -> PersonalTemplate:
        """A body without slots (a transactional email), whatever text it happens to contain."""
        template = cls("")
        template.literals, template.base_length = [body], len(body.encode())
        return template

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self.literals[0]]
        for name, literal in zip(self.fields, self.literals[1:]):
            out.append(values[name])
            out.append(literal)
        return "".join(out)

    @cached_property
    def _json_literals(self) -> list[bytes]:
        return [orjson.dumps(part)[1:-1] for part in self.literals]

    def fill_json(self, values: Mapping[str, str]) -> orjson.Fragment:
        """``fill`` as a JSON string, ready for orjson: the literal parts are escaped once per send
        (JSON escapes character by character, so the pieces join), and a reader's copy costs a join
        instead of another pass over 60 KB of HTML (that pass was half of a per-message send)."""
        literals = self._json_literals
        out = [b'"', literals[0]]
        for name, literal in zip(self.fields, literals[1:]):
            out.append(orjson.dumps(values[name])[1:-1])
            out.append(literal)
        out.append(b'"')
        return orjson.Fragment(b"".join(out))


@dataclass(frozen=True)
class Body:
    """The subject and both parts of one email, shared by every message of a send."""

    subject: str
    html: PersonalTemplate
    text: PersonalTemplate

    @classmethod
    def fixed(cls, subject: str, html_body: str, text: str) -> Body:
        return cls(subject, PersonalTemplate.literal(html_body), PersonalTemplate.literal(text))

    def merged(self, marker: Callable[[str], str]) -> tuple[str, str]:
        """HTML and text with each slot replaced by ``marker(variable)``; the HTML slots use the
        ``<field>_html`` variables of :func:`merge_values`, which are escaped for markup."""
        html_slots = {f: marker(f"{f}_html" if f in FREE_TEXT else f) for f in self.fields}
        return self.html.fill(html_slots), self.text.fill({f: marker(f) for f in self.fields})

    def size(self) -> int:
        return len(self.subject.encode()) + self.html.base_length + self.text.base_length

    @cached_property
    def fields(self) -> frozenset[str]:
        return frozenset(self.html.fields) | frozenset(self.text.fields)


def html_values(values: Mapping[str, str]) -> dict[str, str]:
    """Values for the HTML slots: escaped, except signed URLs (BASE_URL is checked to need none)."""
    return {k: html.escape(v) if k in FREE_TEXT else v for k, v in values.items()}


def merge_values(values: Mapping[str, str]) -> dict[str, str]:
    """One reader's variables for a provider-side merge: text values, and markup-escaped twins
    of those that can need escaping (the name)."""
    twins = {f"{k}_html": html.escape(values[k]) for k in FREE_TEXT if k in values}
    return {**values, **twins}
