"""Who is logged in to the editor, as the guards in ``pipeline.web.auth`` find them, and the refusals they raise
(a role too low, an admin who must enrol a second factor first): the app turns those into pages."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException

from pipeline.store.models import Role
from pipeline.web.pages import SHARED_EDITOR


class RoleRequired(HTTPException):
    """A logged-in editor whose role does not cover the route: a 403 page naming the role it needs."""

    def __init__(self, needed: Role) -> None:
        super().__init__(403, needed.value)


class EnrolFirst(HTTPException):
    """An admin without a second factor while ``REQUIRE_2FA`` is set: their account page comes first."""

    def __init__(self) -> None:
        super().__init__(403)


#: What an admin who must enrol a second factor may still reach.
ENROLMENT_PATHS = ("/editor/account", "/editor/logout")


@dataclass(frozen=True)
class Viewer:
    """Who a valid session belongs to: an account (read afresh on every request, so a new role applies at once),
    or the shared password (an admin)."""

    csrf: str
    account_id: int | None
    email: str | None
    role: Role
    has_totp: bool

    @property
    def actor(self) -> str:
        return f"{self.email} ({self.role.value})" if self.email else SHARED_EDITOR
