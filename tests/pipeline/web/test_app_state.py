"""What the app shares between requests is made once, by create_app: no first request races another to make
it (two first votes at once started two webhook threads), and each app has its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from pipeline.config import get_settings
from pipeline.web.app import create_app
from pipeline.web.archive import RecentPages
from pipeline.web.ratelimit import SlidingWindow
from pipeline.web.votes import FreshSplits


def _webhook_threads() -> int:
    return sum(t.name == "site-webhooks" for t in threading.enumerate())


def test_create_app_makes_the_shared_state_before_any_request(settings):
    app = create_app(settings)
    state = app.state
    assert isinstance(state.login_failures, SlidingWindow) and state.login_failures.bucket == "login"
    assert [w.bucket for w in state.signup_limits] == ["signup-ip", "signup-address"]
    assert isinstance(state.web_versions, RecentPages) and isinstance(state.fresh_splits, FreshSplits)
    assert state.site_webhooks is None  # no site listens for votes: no thread waits for them
    other = create_app(settings).state
    assert other.web_versions is not state.web_versions and other.fresh_splits is not state.fresh_splits


def test_one_webhook_thread_per_app_however_many_requests_arrive_at_once(settings, monkeypatch):
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_URL", "http://127.0.0.1:9/hooks/votes")
    monkeypatch.setenv("VERDICTS_VOTES_WEBHOOK_SECRET", "site-shared-secret")
    get_settings.cache_clear()
    before = _webhook_threads()
    app = create_app(get_settings())
    assert _webhook_threads() == before + 1
    notifier = app.state.site_webhooks
    with TestClient(app, base_url="https://testserver") as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post("/vote/not-a-token/alpha/ship").status_code, range(16)))
        assert answers == [400] * 16
        assert app.state.site_webhooks is notifier and _webhook_threads() == before + 1
    # The app shut down (a worker restarting, a test ending): its sender stopped, no thread polls on.
    assert not notifier.thread.is_alive() and _webhook_threads() == before
