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
from operator import itemgetter
from typing import TypeVar

import orjson

from pipeline.errors import RenderError

#: ``vote_url`` is the reader's voting link for the issue; the template adds ``/<tool>/<verdict>``.
#: ``forward_url`` is the public web version with the reader's referral code (``render.forward_url``).
PERSONAL_FIELDS = ("name", "unsubscribe_url", "preferences_url", "vote_url", "forward_url")
#: Slots only the web version has (``render`` offers them with ``web=True``): ``ref_param`` is ``&amp;ref=<code>``
#: when the visitor came through a reader's forward link, else empty, appended to its sign-up links.
WEB_FIELDS = ("ref_param",)
#: The one free-text slot; every other value is a signed URL that never changes under HTML
#: escaping (BASE_URL is checked for it), so only this one needs escaping or an escaped twin.
FREE_TEXT = frozenset({"name"})
PLACEHOLDER = re.compile(r"@@([a-z0-9_]+)@@")
T = TypeVar("T", str, bytes)


class PersonalTemplate:
    """A rendered body cut at its ``@@field@@`` placeholders, so one reader's copy is a single join."""

    def __init__(self, body: str) -> None:
        pieces = PLACEHOLDER.split(body)
        unknown = set(pieces[1::2]) - set(PERSONAL_FIELDS + WEB_FIELDS)
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

    @cached_property
    def _skeleton(self) -> list[str]:
        return _with_gaps(self.literals)

    @cached_property
    def _pick(self) -> Callable[[Mapping[str, T]], tuple[T, ...]]:
        """Each slot's value, in order, in one call (``itemgetter`` gives a bare value for one name)."""
        if len(self.fields) > 1:
            return itemgetter(*self.fields)
        return lambda values: tuple(values[name] for name in self.fields)

    def fill(self, values: Mapping[str, str]) -> str:
        out = self._skeleton.copy()
        out[1::2] = self._pick(values)
        return "".join(out)

    @cached_property
    def _json_skeleton(self) -> list[bytes]:
        quoted = [orjson.dumps(part)[1:-1] for part in self.literals]
        quoted[0] = b'"' + quoted[0]
        quoted[-1] += b'"'  # the same part when there are no slots
        return _with_gaps(quoted)

    def fill_json(self, escaped: Mapping[str, bytes]) -> JsonText:
        """``fill`` as the parts of a JSON string, from values escaped by :func:`json_values`: the
        literal parts are escaped once per send (JSON escapes character by character, so the
        pieces join), and a reader's copy costs escaping a few short values instead of another
        pass over 60 KB of HTML."""
        out = self._json_skeleton.copy()
        out[1::2] = self._pick(escaped)
        return JsonText(out)


def _with_gaps(literals: list[T]) -> list[T]:
    """The literal parts with a gap before each but the first: a reader's copy is then one slice
    assignment of their values into a copy of this list, and one join."""
    skeleton = [literals[0]] * (2 * len(literals) - 1)
    skeleton[0::2] = literals
    return skeleton


class JsonText:
    """A JSON string kept in parts, for :func:`dumps` to join straight into a request body."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts


# orjson escapes control characters inside strings, so a raw NUL in its output is one of ours.
_MARK = orjson.Fragment(b"\x00")


def dumps(document: object) -> bytes:
    """``orjson.dumps`` for documents that hold :class:`JsonText`: orjson writes the rest with a mark
    where each text goes, and one join builds the request. Each 60 KB copy is copied once, into
    the body, instead of joined, copied into orjson's growing buffer and copied out again."""
    texts: list[list[bytes]] = []

    def mark(value: object) -> orjson.Fragment:
        if isinstance(value, JsonText):
            texts.append(value.parts)
            return _MARK
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    pieces = orjson.dumps(document, default=mark).split(b"\x00")
    out = [pieces[0]]
    for parts, piece in zip(texts, pieces[1:], strict=True):
        out += parts
        out.append(piece)
    return b"".join(out)


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


def ascii_markup(markup: str) -> str:
    """Markup as pure ASCII, non-ASCII as character references (``&#233;``): the same page in every
    client whatever charset it assumes, and every later step (personalising, JSON for the provider,
    quoted-printable) takes the fast path."""
    return markup.encode("ascii", "xmlcharrefreplace").decode("ascii")


def html_text(value: str) -> str:
    """Text as ASCII markup, like the rendered HTML it goes into."""
    return ascii_markup(html.escape(value))


def html_values(values: Mapping[str, str]) -> dict[str, str]:
    """Values for the HTML slots: escaped, except signed URLs (BASE_URL is checked to need none)."""
    return {k: html_text(v) if k in FREE_TEXT else v for k, v in values.items()}


def json_values(values: Mapping[str, str]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """One reader's values as the insides of JSON strings, for the HTML slots and the text slots.
    Each value is escaped once and serves both bodies: escaping per body, with the slots filled by
    list comprehensions, made building a Postmark request cost about 3 µs more per reader."""
    text = {k: orjson.dumps(v)[1:-1] for k, v in values.items()}
    return {**text, **{k: orjson.dumps(html_text(values[k]))[1:-1] for k in FREE_TEXT if k in values}}, text


def merge_values(values: Mapping[str, str]) -> dict[str, str]:
    """One reader's variables for a provider-side merge: text values, and markup-escaped twins
    of those that can need escaping (the name)."""
    twins = {f"{k}_html": html_text(values[k]) for k in FREE_TEXT if k in values}
    return {**values, **twins}
