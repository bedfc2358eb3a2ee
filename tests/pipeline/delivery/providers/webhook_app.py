"""The web app with every provider's webhook configured, for the webhook test modules (import the fixtures)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipeline.config import get_settings
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope, upgrade
from pipeline.web.app import create_app
from tests.conftest import seed_issue
from tests.pipeline.delivery.providers import webhook_fixtures as fx


@pytest.fixture
def keys() -> fx.Keys:
    return fx.Keys()


@pytest.fixture
def hooks(workdir, monkeypatch, keys):
    """The web app with every provider's webhook secret configured, an issue sent to 4 readers."""
    for name, value in keys.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VERDICTS_SOFT_BOUNCE_LIMIT", "3")
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    cert = keys.sns_certificate()
    monkeypatch.setattr(
        "pipeline.delivery.providers.ses.fetch_certificate", lambda url: cert if url == fx.CERT_URL else None
    )
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=4)
    send_issue(settings, issue.id, OutboxProvider(settings))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client, settings
