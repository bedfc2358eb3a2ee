"""Every route of the app (but the providers' webhooks), walked with hostile values in every path, query and
form field it reads, logged in and not: the answer is a 4xx or the normal page, never a 500. A field added
to a route later is walked too: the names come from the routes themselves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pipeline.content.issues import get_issue, issue_comparisons
from pipeline.email.clicks import click_signature
from pipeline.email.render import reader_url
from pipeline.ops.api_tokens import create_token
from pipeline.store.db import session_scope
from pipeline.web.app import create_app
from subscribers.lookup import get_by_email
from subscribers.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_timed_token, make_vote_token
from tests.conftest import EDITOR_PASSWORD as PASSWORD
from tests.conftest import db_snapshot, editor_site

#: Raw, already percent-encoded: what a client can put on the wire that a str cannot say (a lone surrogate
#: in UTF-8, bytes that are no UTF-8 at all).
RAW = ["%ED%A0%80", "%FF%FE", "%00", "%C3%A9%E2%82%AC"]
#: Decoded values, each percent-encoded on the way out.
VALUES = [
    "é€😀 naïve",
    "\x00",
    "a\x00b",
    "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
    "x" * 100_000,
    "-1",
    "99999999999999999999999",
    "1e400",
    "",
    " ",
    "[]",
    "../../etc/passwd",
    "\r\nSet-Cookie: a=b",
    "<script>",
]
#: Routes whose 5xx is their designed answer: the scheduler's health check says 503 while no scheduler beats.
DESIGNED = {("GET", "/healthz/scheduler", 503)}
#: Read from the form by hand (not declared as parameters), so not found on the routes.
EXTRA_FIELDS = {"csrf", "to", "next"}


@pytest.fixture
def app_env(workdir, monkeypatch):
    settings, issue_id = editor_site(workdir, monkeypatch, SIGNUP_LIMIT_PER_IP="100000")
    with session_scope(settings.database_url) as session:
        issue = get_issue(session, issue_id)
        comparison = issue_comparisons(session, issue)[0]
        reader = get_by_email(session, "reader0@example.com").id
        secret = settings.secret_key.get_secret_value()
        valid = {
            "issue_id": str(issue.id),
            "comparison_id": str(comparison.id),
            "action": "up",
            "week": issue.week,
            "tool": str(comparison.tools[0].id),
            "verdict": "ship",
            "signature": click_signature(secret, issue.id, comparison.id),
            "token_id": str(create_token(session, "walk", ["issues:read"], "test").row.id),
            "event_id": "1",
            "account_id": "1",
        }
        tokens = {
            "/preferences": reader_url(settings, PREFERENCES, reader).rsplit("/", 1)[1],
            "/unsubscribe": reader_url(settings, UNSUBSCRIBE, reader).rsplit("/", 1)[1],
            "/confirm": make_timed_token(secret, CONFIRM, reader),
            "/vote": make_vote_token(secret, reader, issue.id),
        }
    return settings, valid, tokens


def _api_routes(routes: list) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.130 keeps them whole)
            yield from _api_routes(route.original_router.routes)


def _routes(app) -> Iterator[tuple[str, str, set[str], set[str]]]:
    """(method, path template, path params, other field names) of every route but the webhooks."""
    for route in _api_routes(app.routes):
        if route.path.startswith("/webhooks/"):
            continue
        fields = set(_params(route.dependant, "query_params")) | set(_params(route.dependant, "body_params"))
        for method in route.methods:
            yield method, route.path, set(_params(route.dependant, "path_params")), fields | EXTRA_FIELDS


def _params(dependant: Dependant, kind: str) -> Iterator[str]:
    """The names of one kind of parameter a route reads, its dependencies' included."""
    yield from (p.alias for p in getattr(dependant, kind))
    for sub in dependant.dependencies:
        yield from _params(sub, kind)


def _fill(template: str, params: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], template)


def _path_params(template: str, names: set[str], valid: dict[str, str], tokens: dict[str, str]) -> dict[str, str]:
    token = next((t for prefix, t in tokens.items() if template.startswith(prefix)), "x")
    return {n: quote(token if n == "token" else valid[n], safe="") for n in names}


FORM = {"content-type": "application/x-www-form-urlencoded"}


def _queries(fields: set[str]) -> Iterator[tuple[str, str, dict]]:
    """(label for the failure message, query string, TestClient keyword arguments) of each GET."""
    yield "no query", "", {}
    for raw in RAW:
        yield f"every field {raw}", "?" + "&".join(f"{f}={raw}" for f in fields), {}
    for value in VALUES:  # cut to fit the client's 64 KB URL
        yield f"every field {value[:20]!r}", "", {"params": {f: value[: 60_000 // len(fields)] for f in fields}}
    yield "every field twice", "?" + "&".join(f"{f}=1&{f}=2" for f in fields), {}


def _bodies(fields: set[str], csrf: str) -> Iterator[tuple[str, str, dict]]:
    """The same for each POST: hostile bodies, with the session's csrf token and without."""
    yield "no fields", "", {}
    for raw in RAW:
        yield f"every field {raw}", "", {"content": "&".join(f"{f}={raw}" for f in fields), "headers": FORM}
    for value in VALUES:
        for keep_csrf in (False, True):
            data = {f: value for f in fields} | ({"csrf": csrf} if keep_csrf else {})
            yield f"every field {value[:20]!r} (csrf {'kept' if keep_csrf else 'too'})", "", {"data": data}
    twice = "&".join(f"{f}=1&{f}=2" for f in fields - {"csrf"}) + f"&csrf={csrf}"
    yield "every field twice", "", {"content": twice, "headers": FORM}
    yield "every field a file", "", {"files": {f: ("x.bin", b"\x00\xff", "application/octet-stream") for f in fields}}
    yield "a JSON body", "", {"json": {f: [1] for f in fields}}


def _login(client: TestClient) -> str:
    form = client.get("/editor/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    assert client.post("/editor/login", data={"password": PASSWORD, "csrf": token}).status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/editor").text).group(1)


def _walk(client: TestClient, app, valid: dict[str, str], tokens: dict[str, str], csrf: str) -> list[str]:
    """Every hostile request to every route; returns those answered 5xx."""
    failures = []
    for method, template, names, fields in _routes(app):
        if template == "/editor/logout":
            continue  # would end the walk's own session; its input is the csrf field alone, walked on every form
        good = _path_params(template, names, valid, tokens)
        paths = [_fill(template, good)] + [
            _fill(template, good | {n: v})
            for n in names
            for v in [*RAW, *(quote(v[:8000], safe="") for v in VALUES if v)]
        ]
        for path in paths:
            # The hostile paths alone; their fields get the hostile values on the valid path.
            requests = (
                [("as is", "", {})]
                if path != paths[0]
                else list(_queries(fields) if method == "GET" else _bodies(fields, csrf))
            )
            for label, query, kwargs in requests:
                status = client.request(method, path + query, **kwargs).status_code
                if status >= 500 and (method, template, status) not in DESIGNED:
                    failures.append(f"{method} {path[:100]} with {label}: {status}")
    return failures


@pytest.mark.parametrize("logged_in", [False, True], ids=["visitor", "editor"])
def test_no_route_answers_hostile_input_with_a_server_error(app_env, logged_in):
    settings, valid, tokens = app_env
    app = create_app(settings)
    assert len(list(_routes(app))) >= 25, "the walk must find the app's routes"
    with TestClient(
        app, base_url="https://testserver", follow_redirects=False, raise_server_exceptions=False
    ) as client:
        csrf = _login(client) if logged_in else "no-session"
        failures = _walk(client, app, valid, tokens, csrf)
    assert failures == [], f"{len(failures)} requests answered 5xx:\n" + "\n".join(failures[:40])


def test_a_refused_field_is_named_with_its_value_and_nothing_changes(app_env):
    """What the walk's 4xx pages say: which field, what it held, what to do; and the database is as it was."""
    settings, valid, _ = app_env
    before = db_snapshot(settings.database_url)
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        login = client.post("/editor/login", data={"csrf": "é€", "password": "x"})  # was a TypeError: a 500
        assert login.status_code == 403 and "login form expired" in login.text
        nul = client.post("/subscribe", data={"email": "a@example.com", "name": "Ann\x00"})
        assert nul.status_code == 400 and "form field “name” contains a NUL character" in nul.text
        assert "&#39;Ann\\x00&#39;" in nul.text and "Remove it and send again" in nul.text
        _login(client)
        huge = client.get("/editor/issues/99999999999999999999")  # was an overflow in the driver: a 500
        assert huge.status_code == 400 and "path field “issue_id”" in huge.text and "99999999999999999999" in huge.text
        # The issue list's error and status are not the visitor's to set.
        forged = client.get("/editor", params={"error": "Send your password to evil.example", "status_code": "500"})
        assert forged.status_code == 200 and "evil.example" not in forged.text
    logged_in = ("editor_session", "rate_limit")  # the login itself, and its attempts counted
    assert {t: rows for t, rows in db_snapshot(settings.database_url).items() if t not in logged_in} == {
        t: rows for t, rows in before.items() if t not in logged_in
    }
