"""What operators and their monitoring read: `/healthz` (the database answers; how the scheduler is),
`/healthz/scheduler` (it beats) and
`/metrics` (Prometheus, only with VERDICTS_METRICS_TOKEN, then only for that bearer token)."""

from __future__ import annotations

import hmac
from functools import lru_cache

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from sqlmodel import Session
from starlette.exceptions import HTTPException

from pipeline.config import Settings
from pipeline.ops import heartbeat, metrics
from pipeline.store.db import get_engine

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def health(request: Request) -> JSONResponse:
    """The web app's health, for a load balancer or an uptime check: 200 while the database answers, 503 when
    it does not. The scheduler's state is reported too ("degraded" when it stopped beating), without failing:
    a stopped scheduler must not take the public pages out of a load balancer. One lookup by primary key."""
    scheduler = _scheduler(request)
    if scheduler is None:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    # A site that never ran a scheduler (sending by hand) is not degraded; one whose scheduler stopped is.
    status = "degraded" if scheduler.status == "stopped" else "ok"
    return JSONResponse({"status": status, "database": "ok", "scheduler": scheduler.report()})


@router.get("/healthz/scheduler")
def scheduler_health(request: Request) -> JSONResponse:
    """For the monitor that watches the sending: 200 only while a scheduler beats; 503 when it stopped beating,
    stopped on purpose, or never ran here (or the database does not answer)."""
    scheduler = _scheduler(request)
    if scheduler is None:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse(scheduler.report(), status_code=200 if scheduler.running else 503)


def _scheduler(request: Request) -> heartbeat.SchedulerState | None:
    """The scheduler's last word, or None when the database does not answer."""
    settings: Settings = request.app.state.settings
    try:
        with Session(get_engine(settings.database_url)) as session:
            return heartbeat.state(session)
    except sa.exc.SQLAlchemyError:
        return None


@lru_cache(maxsize=4)
def _registry(database_url: str) -> CollectorRegistry:
    return metrics.registry(database_url)


@router.get("/metrics")
def prometheus(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token is None:
        raise HTTPException(404)  # off: as if there were no such page
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    # Compared in constant time, so the answer's timing tells nothing about how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return JSONResponse(
            {"error": "a bearer token is required (VERDICTS_METRICS_TOKEN)"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    try:
        body = encoder(_registry(settings.database_url))
    except sa.exc.SQLAlchemyError:
        return JSONResponse({"error": "the database did not answer"}, status_code=503)
    return Response(body, media_type=content_type)
