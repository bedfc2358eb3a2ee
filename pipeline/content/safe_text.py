"""What text from a comparison file may hold on its way into a header or a line of an email.

Controls, Unicode's line and paragraph separators, bidi controls ("Trojan Source") and lone surrogates are
refused with the character named and a fix; and text shown as written is kept out of the providers' reach
(`inert`), so their per-reader merge tags never fill it in. The import format, the editor's edits and the
messages' headers all check text this one way.
"""

from __future__ import annotations

import re
import unicodedata

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
    that could open or close a merge tag (invisible; valid URLs have none, see ``import_format._link``)."""
    return MERGE_SYNTAX.sub(lambda m: m.group(0) + "\u200b", text)
