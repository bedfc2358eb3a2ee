"""X-Forwarded-For and X-Forwarded-Proto are believed only from VERDICTS_TRUSTED_PROXIES, whatever
server runs the app (here Starlette's test client, connecting from the address each test picks)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from pipeline.config import get_settings
from pipeline.store.db import upgrade
from pipeline.web.app import create_app
from pipeline.web.ratelimit import client_key
from subscribers.models import ConsentRecord
from tests.conftest import db_snapshot


@pytest.fixture
def app_from(workdir, monkeypatch):
    """A client connecting from ``peer`` to the app made with these settings (over plain http)."""

    def make(peer: str, **env: str) -> TestClient:
        monkeypatch.setenv("VERDICTS_BASE_URL", "http://127.0.0.1:8000")
        monkeypatch.setenv("VERDICTS_SIGNUP_LIMIT_PER_IP", "2")
        for key, value in env.items():
            monkeypatch.setenv(f"VERDICTS_{key}", value)
        get_settings.cache_clear()
        settings = get_settings()
        upgrade(settings.database_url)
        app = create_app(settings)
        return TestClient(app, base_url="http://testserver", client=(peer, 40000), follow_redirects=False)

    return make


def _sign_up(client: TestClient, email: str, forwarded_for: str | None = None, proto: str | None = None):
    """303 (to the check-your-inbox page) when the sign-up went through, 429 when the limit refused it."""
    headers = {k: v for k, v in (("X-Forwarded-For", forwarded_for), ("X-Forwarded-Proto", proto)) if v}
    return client.post("/subscribe", data={"email": email}, headers=headers)


def _recorded_ips(session) -> list[str | None]:
    return [r.ip for r in session.exec(select(ConsentRecord).order_by(ConsentRecord.id)).all()]


def test_by_default_forwarded_headers_are_ignored_even_from_loopback(app_from, session):
    with app_from("127.0.0.1") as client:
        codes = [_sign_up(client, f"r{i}@example.com", f"203.0.113.{i}", "https").status_code for i in range(3)]
        assert codes == [303, 303, 429]
        assert _recorded_ips(session) == ["127.0.0.1", "127.0.0.1"]
        page = client.get("/subscribe", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in page.headers


def test_a_trusted_proxy_is_believed_for_the_right_most_address_it_did_not_add(app_from, session):
    # 127.0.0.1 (nginx) and 10.0.0.0/8 (a load balancer before it) are ours; whatever the client wrote comes first.
    with app_from("127.0.0.1", TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8") as client:
        chain = lambda real: f"198.51.100.1, {real}, 10.1.2.3"  # noqa: E731
        assert _sign_up(client, "a@example.com", chain("203.0.113.9")).status_code == 303
        assert _sign_up(client, "b@example.com", chain("203.0.113.9"), "https").status_code == 303
        assert _sign_up(client, "c@example.com", chain("203.0.113.9")).status_code == 429
        assert _sign_up(client, "d@example.com", chain("203.0.113.10")).status_code == 303  # another reader
        assert _recorded_ips(session) == ["203.0.113.9", "203.0.113.9", "203.0.113.10"]
        page = client.get("/editor/login", headers={"X-Forwarded-For": "203.0.113.10", "X-Forwarded-Proto": "https"})
        assert page.headers["strict-transport-security"].startswith("max-age=")
        assert "; secure" in page.headers["set-cookie"].lower()
        plain = client.get("/subscribe", headers={"X-Forwarded-Proto": "http"})
        assert "strict-transport-security" not in plain.headers


def test_a_peer_that_is_not_a_listed_proxy_is_not_believed(app_from, session):
    with app_from("192.0.2.5", TRUSTED_PROXIES="10.0.0.0/8") as client:
        assert _sign_up(client, "a@example.com", "203.0.113.9", "https").status_code == 303
        assert _recorded_ips(session) == ["192.0.2.5"]
        claimed = client.get("/subscribe", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in claimed.headers


def test_ipv6_readers_are_limited_per_64_and_recorded_exactly(app_from, session):
    with app_from("::1", TRUSTED_PROXIES="::1") as client:
        codes = [_sign_up(client, f"r{i}@example.com", f"2001:db8:1:2::{i + 1}").status_code for i in range(3)]
        assert codes == [303, 303, 429]
        assert _sign_up(client, "far@example.com", "2001:db8:1:3::1").status_code == 303
        assert _recorded_ips(session) == ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::1"]
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1" and client_key("2001:db8::1") == "2001:db8::/64"


def test_a_bad_trusted_proxies_entry_is_refused_naming_it(verdicts, monkeypatch, settings):
    before = db_snapshot(settings.database_url)
    for value, entry in (("10.0.0.0/8, proxy.internal", "proxy.internal"), ("*", "*"), ("10.0.0.0/33", "10.0.0.0/33")):
        monkeypatch.setenv("VERDICTS_TRUSTED_PROXIES", value)
        result = verdicts("serve")
        assert result.code != 0 and "VERDICTS_TRUSTED_PROXIES" in result.err
        assert f"{entry!r} is not an IP address or network" in result.err and "e.g. 127.0.0.1, 10.0.0.0/8" in result.err
        assert result.err.count("\n") == 1
    assert db_snapshot(settings.database_url) == before
    monkeypatch.setenv("VERDICTS_TRUSTED_PROXIES", " 127.0.0.1 ,10.0.0.1/8,, ::1")
    get_settings.cache_clear()
    assert get_settings().trusted_proxy_networks == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
