"""The provider fakes, started per test and wired into the settings; the web app with every provider's
webhook configured (``keys``, ``hooks``); and the helpers every provider test uses (a fresh issue, one
send, the ledger by address)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from pipeline.config import get_settings
from pipeline.delivery.providers import OutboxProvider, get_fallback, get_provider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope, upgrade
from pipeline.store.models import Delivery
from pipeline.web.app import create_app
from tests.conftest import seed_issue
from tests.fakes.provider_api import TEST_CREDENTIALS as CREDS
from tests.fakes.provider_api import TEST_ENV as ENV
from tests.fakes.provider_api import FakeProviderAPI
from tests.fakes.readers import add_readers
from tests.pipeline.delivery.providers import webhook_fixtures as fx


@pytest.fixture
def api(workdir, monkeypatch, request):
    """Start fakes and point the settings at them: ``api("postmark")`` → (fake, settings)."""
    fakes = []
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(workdir / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(workdir / "no-aws-credentials"))

    def start(name: str, *, fallback: str | None = None, **env: str):
        fake = FakeProviderAPI(name, CREDS[name])
        fakes.append(fake)
        settings_env = {
            "VERDICTS_PROVIDER": name,
            "VERDICTS_PROVIDER_BASE_URL": fake.base_url,
            "VERDICTS_PROVIDER_RETRY_BASE_SECONDS": "0.01",
            "VERDICTS_PROVIDER_TIMEOUT_SECONDS": "2",
            "VERDICTS_PROVIDER_CONCURRENCY": "4",
            **ENV[name],
            **env,
        }
        for key, value in settings_env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        settings = get_settings()
        upgrade(settings.database_url)
        return fake, settings

    yield start
    for fake in fakes:
        fake.close()


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


def new_issue(settings, workdir, readers: int):
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, workdir, readers=0)
    add_readers(settings.database_url, readers)
    return issue


def send(settings, issue_id: int, with_fallback: bool = False):
    provider = get_provider(settings)
    fallback = get_fallback(settings) if with_fallback else None
    try:
        return send_issue(settings, issue_id, provider, fallback=fallback)
    finally:
        provider.close()
        if fallback:
            fallback.close()


def ledger(settings) -> dict[str, Delivery]:
    with session_scope(settings.database_url) as session:
        return {d.email: d for d in session.exec(select(Delivery)).all()}
