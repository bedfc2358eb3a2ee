"""The "Read the full comparison" link of the email: ``/r/<issue>/<comparison>/<signature>`` on our own site,
which counts one click in aggregate and redirects to the comparison (``pipeline.web.clicks``).

The same link for every reader (the render runs once per issue): no reader id, so a click says which issue and
which comparison, never who. Signed with SECRET_KEY under a purpose of its own, so nobody can make our site
redirect elsewhere: the target is the comparison's URL from the database, and only ids we signed are served.
"""

from __future__ import annotations

import hmac

from pipeline.config import Settings
from subscribers.tokens import signer

CLICK = "click"
#: The first part of the path: short, as the link is shown in the text part.
PREFIX = "r"


def click_signature(secret: str, issue_id: int, comparison_id: int) -> str:
    """The keyed hash over both ids (its own key: a voting or unsubscribe signature is not one)."""
    return signer(secret, CLICK)(issue_id, comparison_id).rpartition(".")[2]


def is_click_signature(secret: str, issue_id: int, comparison_id: int, signature: str) -> bool:
    return signature.isascii() and hmac.compare_digest(signature, click_signature(secret, issue_id, comparison_id))


def click_url(settings: Settings, issue_id: int, comparison_id: int) -> str:
    signature = click_signature(settings.secret_key.get_secret_value(), issue_id, comparison_id)
    return f"{settings.base_url.rstrip('/')}/{PREFIX}/{issue_id}/{comparison_id}/{signature}"
