"""The three ways in (the /subscribe form, the embedded form, the JSON API) through the real app: where each
sign-up came from lands on its consent record, the embed's framing headers, the API's problems and CORS."""

from __future__ import annotations

import pytest
from sqlmodel import select

from pipeline.config import Settings
from pipeline.content.importing import load_files, upsert
from subscribers.lookup import get_by_email
from subscribers.models import ConsentRecord, SubscriberStatus
from subscribers.service import add_subscriber, suppress, unsubscribe
from subscribers.tokens import REFERRAL, make_token
from tests.conftest import comparison, days_ago, db_snapshot, outbox_messages, write_json

ORIGIN = "https://partner.example.org"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def site(workdir, monkeypatch, tmp_path):
    """A site that lets ORIGIN embed the form, with one comparison (category "Developer Tools")."""
    monkeypatch.setenv("VERDICTS_EMBED_ORIGINS", f"{ORIGIN}, http://localhost:8080")
    from pipeline.config import get_settings
    from pipeline.store.db import session_scope, upgrade

    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        upsert(session, load_files([write_json(tmp_path / "c.json", [comparison("cursor-vs-zed", days_ago(1))])]))
    return settings


@pytest.fixture
def app_client(site):
    from fastapi.testclient import TestClient

    from pipeline.web.app import create_app

    with TestClient(create_app(site), base_url="https://testserver", follow_redirects=False) as c:
        yield c


def _record(settings: Settings, email: str) -> ConsentRecord:
    from pipeline.store.db import session_scope

    with session_scope(settings.database_url) as session:
        sub = get_by_email(session, email)
        return session.exec(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id)).one()


def test_the_form_carries_source_utm_and_interests_from_its_link_to_the_consent_record(app_client, site):
    shown = app_client.get("/subscribe?source=cursor-vs-zed&utm_source=x.com&utm_medium=social&utm_term=%01bad")
    assert 'name="source" value="cursor-vs-zed"' in shown.text and 'name="utm_source" value="x.com"' in shown.text
    assert "utm_term" not in shown.text  # a control character: dropped, never a failed sign-up
    assert 'type="checkbox" name="interests" value="Developer Tools"' in shown.text and "tick none" in shown.text
    form = {"email": "fe@example.com", "name": "", "website": "", "source": "cursor-vs-zed", "utm_source": "x.com"}
    r = app_client.post("/subscribe", data={**form, "interests": "developer tools"})
    assert r.status_code == 303 and r.headers["location"] == "/subscribe/check-inbox"
    record = _record(site, "fe@example.com")
    assert (record.source, record.page, record.utm) == ("form", "cursor-vs-zed", {"utm_source": "x.com"})
    from pipeline.store.db import session_scope

    with session_scope(site.database_url) as session:
        assert get_by_email(session, "fe@example.com").interests == ["Developer Tools"]
    refused = app_client.post("/subscribe", data={**form, "email": "o@example.com", "interests": "Knitting"})
    assert refused.status_code == 422 and "Knitting" in refused.text and "Developer Tools" in refused.text


def test_a_referral_counts_only_for_a_confirmed_reader_and_a_bad_code_never_fails(app_client, site):
    from pipeline.store.db import session_scope

    secret = site.secret_key.get_secret_value()
    with session_scope(site.database_url) as session:
        fan = add_subscriber(session, "fan@example.com", confirmed=True).subscriber
        waiting = add_subscriber(session, "wait@example.com").subscriber
        session.flush()
        codes = {"good": make_token(secret, REFERRAL, fan.id), "pending": make_token(secret, REFERRAL, waiting.id)}
    codes["forged"] = codes["good"][:-1] + ("0" if codes["good"][-1] != "0" else "1")
    for kind, code in codes.items():
        r = app_client.post("/embed/subscribe", data={"email": f"{kind}@example.com", "ref": code, "website": ""})
        assert r.status_code == 303
        record = _record(site, f"{kind}@example.com")
        assert record.referrer_id == (fan.id if kind == "good" else None), kind
        with session_scope(site.database_url) as session:
            assert get_by_email(session, f"{kind}@example.com").referred_by == record.referrer_id


def test_the_embed_may_be_framed_by_the_listed_origins_only_and_every_other_page_by_nobody_else(app_client):
    embed = app_client.get("/embed/subscribe?source=cursor-vs-zed")
    csp = embed.headers["content-security-policy"]
    assert (
        embed.status_code == 200 and "frame-ancestors 'self' https://partner.example.org http://localhost:8080" in csp
    )
    assert "x-frame-options" not in embed.headers and "script-src" not in csp and "<script" not in embed.text
    assert 'action="/embed/subscribe"' in embed.text and 'name="website"' in embed.text
    for path in ("/subscribe", "/embed/subscribe/check-inbox?x=1", "/editor/login"):
        other = app_client.get(path)
        if path.startswith("/embed"):
            assert other.headers["content-security-policy"] == csp  # still inside the frame
            continue
        assert "frame-ancestors 'self';" in other.headers["content-security-policy"], path
        assert other.headers["x-frame-options"] == "SAMEORIGIN", path
    bot = app_client.post("/embed/subscribe", data={"email": "bot@example.com", "website": "http://spam"})
    assert bot.status_code == 303 and bot.headers["location"] == "/embed/subscribe/check-inbox"
    done = app_client.get(bot.headers["location"])
    assert (
        "Check your inbox" in done.text
        and "frame-ancestors 'self' https://partner" in done.headers["content-security-policy"]
    )
    bad = app_client.post("/embed/subscribe", data={"email": "nope", "website": ""})
    assert bad.status_code == 422 and "does not look like an email address" in bad.text and 'value="nope"' in bad.text
    # The app's own refusals (a field past its limit, a body too large) still show inside the partner's frame.
    for refused in (
        app_client.post("/embed/subscribe", data={"email": "a@example.com", "name": "a" * 1200}),
        app_client.post("/embed/subscribe", content=b"email=" + b"a" * 2_000_000, headers={"Content-Type": FORM}),
    ):
        assert refused.status_code in (400, 413) and refused.headers["content-security-policy"] == csp
        assert "x-frame-options" not in refused.headers


def test_typos_do_not_use_up_the_networks_hourly_sign_ups(app_client, site):
    for _ in range(site.signup_limit_per_ip + 2):
        assert app_client.post("/embed/subscribe", data={"email": "nope"}).status_code == 422
    assert app_client.post("/subscribe", data={"email": "right@example.com"}).status_code == 303
    assert _api(app_client, {"email": "also-right@example.com"}).status_code == 202


def _api(client, body, origin: str | None = None, **kwargs):
    headers = {"Origin": origin} if origin else {}
    return client.post("/api/v1/subscribe", json=body, headers=headers, **kwargs)


def test_the_api_answers_the_same_whatever_the_address_and_records_where_it_came_from(app_client, site):
    from pipeline.store.db import session_scope

    with session_scope(site.database_url) as session:
        add_subscriber(session, "in@example.com", confirmed=True)
        add_subscriber(session, "pending@example.com")
        unsubscribe(session, add_subscriber(session, "left@example.com", confirmed=True).subscriber)
        suppress(session, "angry@example.com", "complaint")
    answers = {
        email: _api(app_client, {"email": email, "source": "api-docs", "utm": {"campaign": "launch"}})
        for email in (
            "new@example.com",
            "in@example.com",
            "pending@example.com",
            "left@example.com",
            "angry@example.com",
        )
    }
    assert {(r.status_code, r.text) for r in answers.values()} == {(202, answers["new@example.com"].text)}
    record = _record(site, "new@example.com")
    assert (record.source, record.page, record.utm) == ("api", "api-docs", {"utm_campaign": "launch"})
    sent_to = {m["To"].addresses[0].addr_spec for m in outbox_messages(site)}
    assert sent_to == {"new@example.com", "pending@example.com", "left@example.com"}  # never the complainer


BAD_BODIES = [
    ({"name": "No Email"}, "email"),
    ({"email": "not-an-address"}, "email"),
    ({"email": 42}, "email"),
    ({"email": "a@example.com", "name": ["x"]}, "name"),
    ({"email": "a@example.com", "interests": "Developer Tools"}, "interests"),
    ({"email": "a@example.com", "interests": ["Knitting"]}, "interests"),
    ({"email": "a@example.com", "source": "x" * 201}, "source"),
    ({"email": "a@example.com", "utm_source": "y" * 101}, "utm_source"),
    ({"email": "a@example.com", "utm": {"colour": "red"}}, "utm.colour"),
    ({"email": "a@example.com", "utm": "launch"}, "utm"),
    ({"email": "a@example.com", "admin": True}, "admin"),
    ({"email": "a\x00@example.com"}, "email"),
    ({"email": "a@example.com", "name": "\u202eevil"}, "name"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_every_api_problem_names_its_field_and_changes_nothing(app_client, site, body, field):
    before = _without_limits(db_snapshot(site.database_url))
    r = _api(app_client, body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    problem = r.json()
    assert {"type", "title", "status", "detail"} <= problem.keys() and problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]] and all(e["detail"] for e in problem["errors"])
    if field == "interests" and body["interests"] == ["Knitting"]:
        assert "Developer Tools" in problem["errors"][0]["detail"]  # the choices
    assert _without_limits(db_snapshot(site.database_url)) == before


def _without_limits(snapshot: dict) -> dict:
    # A refused sign-up still counts towards its client's limit, as the form's does: every try costs one.
    return {table: rows for table, rows in snapshot.items() if table != "rate_limit"}


@pytest.mark.parametrize(
    ("content", "kind", "status", "field"),
    [
        (b"{not json", "application/json", 400, "body"),
        (b"\xff\xfe", "application/json", 400, "body"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "body"),
        (b"[1, 2]", "application/json", 422, "body"),
        (b'{"email": "a@example.com"}', "text/plain", 415, "Content-Type"),
        (b"email=a@example.com", "application/x-www-form-urlencoded", 415, "Content-Type"),
        (b'{"email": "' + b"a" * 20000 + b'"}', "application/json", 413, None),
        # Valid JSON whose names hold a lone surrogate: quoted back, they could not be encoded as UTF-8 (a 500).
        (b'{"\\ud800": 1}', "application/json", 422, "\ud800"),
        (b'{"email": "a@example.com", "utm": {"\\udfff": "x"}}', "application/json", 422, "utm.\udfff"),
    ],
)
def test_hostile_bodies_get_a_problem_never_a_500(app_client, site, content, kind, status, field):
    r = app_client.post("/api/v1/subscribe", content=content, headers={"Content-Type": kind})
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    if field:
        assert r.json()["errors"][0]["field"] == field


def test_the_api_limit_is_a_429_problem_with_retry_after(app_client, site):
    answers = [_api(app_client, {"email": f"r{i}@example.com"}).status_code for i in range(site.signup_limit_per_ip)]
    assert answers == [202] * site.signup_limit_per_ip
    r = _api(app_client, {"email": "one-more@example.com"})
    assert r.status_code == 429 and r.headers["retry-after"] == "3600"
    assert r.headers["content-type"] == "application/problem+json" and r.json()["status"] == 429
    assert app_client.get("/api/v1/subscribe").headers["content-type"] == "application/problem+json"  # 405


def test_cors_for_the_listed_origins_only_and_only_on_the_api(app_client):
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = app_client.options("/api/v1/subscribe", headers={"Origin": ORIGIN, **ask})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    refused = app_client.options("/api/v1/subscribe", headers={"Origin": "https://evil.example", **ask})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    posted = _api(app_client, {"email": "c@example.com"}, origin=ORIGIN)
    assert posted.status_code == 202 and posted.headers["access-control-allow-origin"] == ORIGIN
    assert (
        "access-control-allow-origin"
        not in _api(app_client, {"email": "d@example.com"}, "https://evil.example").headers
    )
    page = app_client.get("/subscribe", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in page.headers


def test_a_bad_embed_origin_is_refused_at_load_naming_it(workdir, monkeypatch, verdicts):
    monkeypatch.setenv("VERDICTS_EMBED_ORIGINS", "https://ok.example, https://site.example/compare")
    r = verdicts("config", "check")
    assert r.code != 0 and "https://site.example/compare" in r.out + r.err and "scheme://host[:port]" in r.out + r.err


def test_signups_are_pending_until_confirmed(app_client, site):
    from pipeline.store.db import session_scope

    _api(app_client, {"email": "p@example.com", "interests": []})
    with session_scope(site.database_url) as session:
        sub = get_by_email(session, "p@example.com")
        assert sub.status is SubscriberStatus.pending and sub.interests == []
