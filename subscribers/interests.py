"""Reader interests: the tool categories of the comparisons (``Tool.category``), picked at sign-up and on the
preferences page. No interests means everything, the default; the send orders each reader's issue by them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from pipeline.errors import InvalidInput
from pipeline.store.models import Tool

#: More than any real list of categories, fewer than a form could abuse.
MAX_INTERESTS = 50


def categories(session: Session) -> list[str]:
    """Every category a comparison has used, in alphabetical order (case-insensitive): what a reader can pick."""
    names = session.exec(select(col(Tool.category)).distinct()).all()
    return sorted({name.strip() for name in names if name.strip()}, key=str.casefold)


def clean_interests(session: Session, values: Iterable[str]) -> list[str]:
    """The categories a reader picked, spelled as the comparisons spell them, each once, in ``categories``
    order. An unknown one is refused with the choices (a form is never half-saved)."""
    known = categories(session)
    by_key = {name.casefold(): name for name in known}
    picked: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise InvalidInput(f"interests: {value!r} is not a category name")
        name = by_key.get(value.strip().casefold())
        if name is None:
            shown = ", ".join(known) if known else "none yet"
            raise InvalidInput(f"interests: {value.strip()[:60]!r} is not a category (the categories: {shown})")
        picked.add(name)
    if len(picked) > MAX_INTERESTS:
        raise InvalidInput(f"interests: at most {MAX_INTERESTS} categories")
    return [name for name in known if name in picked]
