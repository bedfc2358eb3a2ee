"""An issue whose three comparisons are about different kinds of tools, and readers with different interests:
what the line-up tests share."""

from __future__ import annotations

import re

from pipeline.store.db import session_scope
from subscribers import service
from subscribers.lookup import get_by_email
from tests.conftest import comparison, days_ago, seed_issue

#: The issue's comparisons, newest (first in the issue) to oldest, and each one's category.
CATEGORIES = {"cmp-0": "Coding", "cmp-1": "Writing", "cmp-2": "Images"}
#: Interests, "only my interests", and the line-up that reader must get.
CHOICES = [
    ([], False, ["cmp-0", "cmp-1", "cmp-2"]),
    (["images"], False, ["cmp-2", "cmp-0", "cmp-1"]),
    (["Images"], True, ["cmp-2"]),
    (["Writing", "Images"], False, ["cmp-1", "cmp-2", "cmp-0"]),
]
#: Interests no comparison of the issue matches (a category of an older one): with "only", the whole issue.
NO_MATCH = (["Audio"], True, ["cmp-0", "cmp-1", "cmp-2"])


def lineup_issue(settings, tmp_path, readers: int):
    """The issue (approved) and its readers, reader<i> with ``CHOICES[i % 4]``, every fifth ``NO_MATCH``:
    returns the issue and each address's expected line-up."""
    items = []
    for i, (slug, category) in enumerate([*CATEGORIES.items(), ("old-audio", "Audio")]):
        item = comparison(slug, days_ago(1 + i / 10 if slug != "old-audio" else 30))
        for tool in item["tools"]:
            tool["category"] = category
        items.append(item)
    expected = {}
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, tmp_path, readers=readers, items=items)
        for i in range(readers):
            reader = get_by_email(session, f"reader{i}@example.com")
            interests, only, lineup = NO_MATCH if i % 5 == 4 else CHOICES[i % 4]
            service.set_interests(session, reader, interests, only)
            expected[reader.email] = lineup
    return issue, expected


def lineup_of(text: str) -> list[str]:
    """The comparisons a message's text shows, in order: each card starts "<n>/<of>  <title>", and a seeded
    comparison's title names its tools ("Alpha cmp-0 vs Beta cmp-0"). Not its links: "Read the full
    comparison" goes through the click-counting redirect, which names the comparison by id."""
    return re.findall(r"^\d+/\d+ +Alpha (\S+) vs ", text, re.MULTILINE)
