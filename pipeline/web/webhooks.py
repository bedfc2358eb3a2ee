"""``POST /webhooks/<provider>``: verify first, then store and act on the events.

Unverified requests get 401 and change nothing; a verified request that cannot be read
gets 400. Providers retry on errors, and a retried event is stored once.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline.config import Settings
from pipeline.delivery.events import record_events
from pipeline.delivery.providers import WEBHOOK_PROVIDERS
from pipeline.delivery.providers.base import WebhookRejected
from pipeline.store.db import session_scope

log = logging.getLogger(__name__)
router = APIRouter()
#: What reading a payload of the wrong shape raises: a value, a missing key, a list where an object belongs,
#: an unhashable value looked up. Every provider reads through load_json and ProviderEvent, which turn deep
#: nesting, non-UTF-8, non-finite numbers and unstorable text into ValueError.
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError)


def confirm_subscription(url: str) -> None:
    """SNS delivers nothing until the subscription is confirmed by fetching its SubscribeURL."""
    httpx.get(url, timeout=10, follow_redirects=False).raise_for_status()


@router.post("/webhooks/{provider}", include_in_schema=False)
async def webhook(provider: str, request: Request) -> JSONResponse:
    reader = WEBHOOK_PROVIDERS.get(provider)
    if reader is None:
        return JSONResponse({"error": f"no webhooks for {provider!r}"}, status_code=404)
    body = await request.body()  # its size was checked on the way in (VERDICTS_WEBHOOK_MAX_BODY_MB)
    settings: Settings = request.app.state.settings
    try:
        # Off the event loop: verifying SNS may fetch a certificate.
        reply = await run_in_threadpool(reader.read_webhook, settings, request.headers, body)
    except WebhookRejected as exc:
        log.warning("refused a %s webhook: %s", provider, exc)
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    except UNREADABLE as exc:
        # Verified, yet no event can be read from it: the provider is told (and retries), nothing changes.
        log.warning("could not read a %s webhook: %s: %.200s", provider, type(exc).__name__, exc)
        return JSONResponse({"error": "the payload could not be read"}, status_code=400)
    if reply.confirm_url:
        try:
            await run_in_threadpool(confirm_subscription, reply.confirm_url)
        except httpx.HTTPError as exc:
            log.warning("could not confirm the SNS subscription: %s", exc)
            return JSONResponse({"error": "subscription confirmation failed"}, status_code=502)
        log.info("confirmed the SNS subscription for %s", provider)

    def store() -> int:
        with session_scope(settings.database_url) as session:
            return record_events(session, provider, reply.events, settings, nonce=reply.nonce)

    stored = await run_in_threadpool(store)
    return JSONResponse({"received": len(reply.events), "stored": stored})
