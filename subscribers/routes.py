"""Public pages: sign-up, confirmation, one-click unsubscribe (RFC 8058) and preferences, as one router.

Each page group is its own module (``signup_routes``, ``unsubscribe_routes``, ``preferences_routes``);
what they share is in ``subscribers.pages``. ``pipeline.web.app`` includes this router.
"""

from __future__ import annotations

from fastapi import APIRouter

from subscribers import embed_routes, preferences_routes, signup_routes, unsubscribe_routes

router = APIRouter()
for _group in (signup_routes, embed_routes, unsubscribe_routes, preferences_routes):
    router.include_router(_group.router)
