"""The site's HTTP API over real HTTP (uvicorn on loopback, httpx): tokens and their scopes, comparisons in by the
import format (all or nothing, idempotent by slug, as the command line), issues out with their counts, problems
for every refusal, and the OpenAPI document."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store import audit
from pipeline.store.db import get_engine, session_scope
from pipeline.store.models import ApiToken, Comparison, Issue, utcnow
from tests.conftest import comparison, days_ago, db_snapshot, seed_issue, write_json

SCOPES = ("comparisons:write", "issues:read")


@pytest.fixture
def api(live_server, verdicts):
    """The live site, and a way to make tokens with the real command line."""
    base, settings = live_server

    def token(name: str, *scopes: str) -> str:
        made = verdicts("api-token", "create", name, *[arg for s in scopes for arg in ("--scope", s)])
        assert made.code == 0, made.err
        return made.out.strip()

    with httpx.Client(base_url=base, timeout=20) as client:
        yield client, settings, token


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _post(client: httpx.Client, token: str | None, body: object) -> httpx.Response:
    return client.post("/api/v1/comparisons", json=body, headers=_bearer(token))


def _content(settings) -> dict:
    """Every row but the tokens' (whose last use a request records): what a request may or may not change."""
    return {table: rows for table, rows in db_snapshot(settings.database_url).items() if table != "api_token"}


def _is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", (r.status_code, r.text)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_each_scope_opens_exactly_its_endpoints_and_no_other_token_opens_any(api, verdicts, workdir):
    client, settings, token = api
    with session_scope(settings.database_url) as session:
        issue_id = seed_issue(session, workdir, readers=1).id
    tokens = {scope: token(f"only-{scope}", scope) for scope in SCOPES}
    tokens["both"] = token("both", *SCOPES)
    revoked = token("revoked", *SCOPES)
    assert verdicts("api-token", "revoke", "revoked").code == 0
    calls = {
        "comparisons:write": lambda t: _post(client, t, comparison("api-one", days_ago(1))),
        "issues:read": lambda t: client.get("/api/v1/issues", headers=_bearer(t)),
        "issues:read ": lambda t: client.get(f"/api/v1/issues/{issue_id}", headers=_bearer(t)),
    }
    for needed, call in calls.items():
        for holder, held in tokens.items():
            r = call(held)
            if holder in (needed.strip(), "both"):
                assert r.status_code in (200, 201), (needed, holder, r.text)
            else:
                problem = _is_problem(r, 403)
                assert needed.strip() in problem["detail"] and problem["errors"][0]["field"] == "scope"
                assert f'scope="{needed.strip()}"' in r.headers["www-authenticate"]
        for bad in (None, revoked, "vt_" + "x" * 43, tokens["both"][:-1] + "?", "not-a-token"):
            r = call(bad)
            _is_problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
    basic = client.get("/api/v1/issues", headers={"Authorization": f"Basic {tokens['both']}"})
    _is_problem(basic, 401)


def test_a_token_is_shown_once_stored_only_hashed_and_its_last_use_recorded_once_a_minute(api, verdicts):
    client, settings, token = api
    secret = token("site-deploy", "issues:read")
    assert secret.startswith("vt_") and len(secret) > 40
    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        dump = json.dumps(db_snapshot(settings.database_url), default=str)
        assert secret not in dump and secret[11:] not in dump  # neither the token nor its secret part
        row = conn.execute(sa.select(ApiToken.__table__)).one()._mapping
    assert row["token_hash"] == hashlib.sha256(secret.encode()).hexdigest() and row["prefix"] == secret[:11]
    assert row["scopes"] == ["issues:read"] and row["created_by"].startswith("cli:") and row["last_used_at"] is None
    with session_scope(settings.database_url) as session:  # the audit trail names the token, never its secret
        made = [(e.actor, str(e.detail)) for e in audit.entries(session) if e.action == "api_token.create"]
    assert len(made) == 1 and made[0][0].startswith("cli:") and secret[:11] in made[0][1]
    assert secret[11:] not in made[0][1]
    listed = verdicts("api-token", "list")
    assert "site-deploy" in listed.out and f"{secret[:11]}…" in listed.out and secret not in listed.out
    assert "never" in listed.out

    assert client.get("/api/v1/issues", headers=_bearer(secret)).status_code == 200
    with session_scope(settings.database_url) as session:
        first = session.exec(select(ApiToken)).one().last_used_at
    assert first is not None and utcnow() - first < timedelta(seconds=30)
    assert client.get("/api/v1/issues", headers=_bearer(secret)).status_code == 200
    with session_scope(settings.database_url) as session:
        row_now = session.exec(select(ApiToken)).one()
        assert row_now.last_used_at == first  # within the minute: not written again
        row_now.last_used_at = first - timedelta(minutes=2)
    assert client.get("/api/v1/issues", headers=_bearer(secret)).status_code == 200
    with session_scope(settings.database_url) as session:
        assert session.exec(select(ApiToken)).one().last_used_at > first

    # Revoked by the first characters `list` shows (with its ellipsis): refused at once.
    assert verdicts("api-token", "revoke", f"{secret[:11]}…").code == 0
    _is_problem(client.get("/api/v1/issues", headers=_bearer(secret)), 401)
    with session_scope(settings.database_url) as session:
        assert session.exec(select(ApiToken)).one().revoked_at is not None  # kept, and listed, as revoked


def test_bad_token_commands_name_the_value_and_change_nothing(api, verdicts):
    _, settings, token = api
    token("site", "issues:read")
    before = db_snapshot(settings.database_url)
    bad_scope = verdicts("api-token", "create", "other", "--scope", "issues:write")
    assert bad_scope.code == 4 and "'issues:write' is not a scope" in bad_scope.err and "issues:read" in bad_scope.err
    taken = verdicts("api-token", "create", "site", "--scope", "issues:read")
    assert taken.code == 4 and "'site' is already an active token's name" in taken.err
    control = verdicts("api-token", "create", "bad\x1bname", "--scope", "issues:read")
    assert control.code == 4 and "U+001B ESCAPE" in control.err
    unknown = verdicts("api-token", "revoke", "nobody")
    assert unknown.code == 4 and "'nobody'" in unknown.err and "api-token list" in unknown.err
    assert db_snapshot(settings.database_url) == before


def test_one_bad_record_writes_nothing_and_the_problem_names_the_record_and_field(api):
    client, settings, token = api
    writer = token("writer", "comparisons:write")
    bad = comparison("bad-one", days_ago(1))
    bad["tools"][1]["category"] = ""
    stranger = comparison("bad-two", days_ago(1))
    stranger["reviews"][0]["tool"] = "nope"  # checked across fields: named all the same
    body = [comparison("good-one", days_ago(1)), bad, stranger, {"slug": "good-one"}]
    before = _content(settings)
    problem = _is_problem(_post(client, writer, body), 422)
    assert "nothing was written" in problem["detail"]
    errors = problem["errors"]
    assert {"record": 1, "slug": "bad-one", "field": "tools[1].category", "detail": "must not be empty"} in errors
    assert any(e["record"] == 2 and e["field"] == "reviews[0].tool" and "'nope'" in e["detail"] for e in errors)
    assert any(e["record"] == 3 and e["field"] == "published_at" and e["detail"] == "is required" for e in errors)
    assert any(e["record"] == 3 and e["field"] == "slug" and "record 0 has it too" in e["detail"] for e in errors)
    assert _content(settings) == before
    shape = _is_problem(_post(client, writer, []), 422)
    assert shape["errors"][0]["field"] == "body" and "an empty list" in shape["errors"][0]["detail"]


def test_comparisons_are_idempotent_by_slug_and_the_api_agrees_with_the_command_line(api, verdicts, tmp_path):
    client, settings, token = api
    writer = token("writer", "comparisons:write")
    records = [comparison("cli-first", days_ago(2)), comparison("cli-second", days_ago(1), tools=3)]
    path = write_json(tmp_path / "site.json", {"comparisons": records})
    imported = verdicts("comparisons", "import", str(path))
    assert "2 new, 0 updated, 0 unchanged" in imported.out

    before = _content(settings)
    same = _post(client, writer, json.loads(path.read_text()))  # the file's very bytes, as the site would send them
    assert same.status_code == 200, same.text
    assert same.json() == {
        "results": [{"slug": "cli-first", "outcome": "unchanged"}, {"slug": "cli-second", "outcome": "unchanged"}],
        "added": 0,
        "updated": 0,
        "unchanged": 2,
    }
    assert _content(settings) == before  # not even updated_at

    records[1]["tools"][2]["entry_price"] = "$9 a month"
    changed = _post(client, writer, [*records, comparison("api-new", days_ago(0.5))])
    assert changed.status_code == 201 and [r["outcome"] for r in changed.json()["results"]] == [
        "unchanged",
        "updated",
        "added",
    ]
    with session_scope(settings.database_url) as session:
        stored = session.exec(select(Comparison).where(Comparison.slug == "cli-second")).one()
        assert stored.tools[2].entry_price == "$9 a month"
    # And back: the command line now finds what the API wrote unchanged.
    path.write_text(json.dumps([*records, comparison("api-new", days_ago(0.5))]))
    again = verdicts("comparisons", "import", str(path))
    assert "0 new, 0 updated, 3 unchanged" in again.out

    # The same bad record: the command line and the API name the same record and field.
    records[0]["url"] = "http://verdicts.example.com/plain"
    path.write_text(json.dumps(records))
    refused = verdicts("comparisons", "import", str(path))
    problem = _is_problem(_post(client, writer, records), 422)
    [error] = problem["errors"]
    assert error["record"] == 0 and error["slug"] == "cli-first" and error["field"] == "url"
    assert f"record 1 (cli-first): url: {error['detail']}" in refused.err


def test_issues_come_newest_first_in_pages_with_their_counts_after_a_real_send(api, workdir):
    client, settings, token = api
    reader = token("reader", "issues:read")
    with session_scope(settings.database_url) as session:
        issue_id = seed_issue(session, workdir, readers=4).id
    send_issue(settings, issue_id, OutboxProvider(settings))
    with session_scope(settings.database_url) as session:
        for week in ("2026-W49", "2026-W50"):
            session.add(Issue(week=week, subject=f"Draft {week}", cutoff=utcnow()))

    first = client.get("/api/v1/issues", params={"limit": 2}, headers=_bearer(reader)).json()
    assert [i["week"] for i in first["issues"]] == ["2026-W50", "2026-W49"]
    assert first["issues"][0]["status"] == "draft" and first["issues"][0]["counts"]["sent"] == 0
    rest = client.get(first["next"], headers=_bearer(reader)).json()
    assert rest["next"] is None and len(rest["issues"]) == 1
    [sent] = rest["issues"]
    assert sent["id"] == issue_id and sent["status"] == "sent" and sent["sent_at"]
    assert sent["counts"]["sent"] == 4 and sent["counts"]["failed"] == 0

    one = client.get(f"/api/v1/issues/{issue_id}", headers=_bearer(reader)).json()
    assert one["counts"]["sent"] == 4 and len(one["comparisons"]) == 3
    assert one["report"]["sent"] == 4 and one["report"]["opens"] == "not tracked" and one["report"]["clicks"] == 0
    assert one["web_version"] == f"{settings.base_url}/issues/{one['week']}"
    missing = _is_problem(client.get("/api/v1/issues/999", headers=_bearer(reader)), 404)
    assert "There is no issue 999" in missing["detail"]


@pytest.mark.parametrize(
    ("content", "kind", "status", "field"),
    [
        (b"{not json", "application/json", 400, "body"),
        (b"\xff\xfe", "application/json", 400, "body"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "body"),
        (b'"a string"', "application/json", 422, "body"),
        (b'{"slug": "x"}', "text/plain", 415, "Content-Type"),
        (b'[{"\\ud800": 1}]', "application/json", 422, ""),  # a name no text holds: the record is refused
        (b'{"slug": "a\\u0000b"}', "application/json", 422, "slug"),
    ],
)
def test_hostile_bodies_get_a_problem_never_a_500(api, content, kind, status, field):
    client, settings, token = api
    writer = token("writer", "comparisons:write")
    before = _content(settings)
    r = client.post("/api/v1/comparisons", content=content, headers={"Content-Type": kind, **_bearer(writer)})
    problem = _is_problem(r, status)
    assert field in [e["field"] for e in problem["errors"]]
    assert _content(settings) == before


def test_hostile_queries_paths_and_headers_get_problems(api):
    client, _, token = api
    reader = token("reader", "issues:read")
    for path, field in [
        ("/api/v1/issues?limit=abc", "limit"),
        ("/api/v1/issues?limit=0", "limit"),
        ("/api/v1/issues?before=99999999999999999999", "before"),
        ("/api/v1/issues/99999999999999999999", "issue_id"),
        ("/api/v1/issues/%ED%A0%80", "issue_id"),
    ]:
        problem = _is_problem(client.get(path, headers=_bearer(reader)), 400)
        assert problem["errors"][0]["field"] == field, path
    assert "/api/docs" in _is_problem(client.delete("/api/v1/issues", headers=_bearer(reader)), 405)["detail"]
    assert "/api/docs" in _is_problem(client.get("/api/v1/nothing-here"), 404)["detail"]
    weird = client.get("/api/v1/issues", headers={"Authorization": "Bearer vt_\xe9\xff".encode("latin-1")})
    _is_problem(weird, 401)


@pytest.fixture
def small_imports(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_IMPORT_MAX_MB", "0.05")


def test_a_body_over_the_import_limit_is_a_413_problem_declared_or_streamed(small_imports, api):
    client, _, token = api
    writer = token("writer", "comparisons:write")
    big = json.dumps([comparison(f"c-{i}", days_ago(1)) for i in range(200)]).encode()
    assert len(big) > 0.05 * 1024 * 1024
    headers = {"Content-Type": "application/json", **_bearer(writer)}
    declared = _is_problem(client.post("/api/v1/comparisons", content=big, headers=headers), 413)
    assert "VERDICTS_IMPORT_MAX_MB" in declared["detail"]
    streamed = client.post("/api/v1/comparisons", content=iter([big[:30000], big[30000:]]), headers=headers)
    _is_problem(streamed, 413)
    assert _post(client, writer, comparison("small-one", days_ago(1))).status_code == 201  # under it, as ever


def test_the_openapi_document_lists_the_endpoints_and_their_security_and_the_docs_page_needs_no_script(api):
    client, _, _ = api
    doc = client.get("/api/openapi.json")
    assert doc.status_code == 200 and doc.headers["content-type"] == "application/json"
    schema = doc.json()
    assert schema["openapi"].startswith("3.") and schema["info"]["title"]
    paths = schema["paths"]
    assert set(paths) == {"/api/v1/subscribe", "/api/v1/comparisons", "/api/v1/issues", "/api/v1/issues/{issue_id}"}
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "vt_…",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert paths["/api/v1/comparisons"]["post"]["security"] == [{"bearerAuth": ["comparisons:write"]}]
    assert paths["/api/v1/issues"]["get"]["security"] == [{"bearerAuth": ["issues:read"]}]
    assert paths["/api/v1/issues/{issue_id}"]["get"]["security"] == [{"bearerAuth": ["issues:read"]}]
    assert "security" not in paths["/api/v1/subscribe"]["post"]
    body = paths["/api/v1/comparisons"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0] == {"$ref": "#/components/schemas/ComparisonIn"}
    assert {"ComparisonIn", "ToolIn", "ReviewIn", "Problem"} <= set(schema["components"]["schemas"])
    assert (
        "email"
        in paths["/api/v1/subscribe"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"]
    )
    assert {"limit", "before"} == {p["name"] for p in paths["/api/v1/issues"]["get"]["parameters"]}

    page = client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "script-src" not in page.headers["content-security-policy"]
    for path in paths:
        assert f"<code>{path}</code>" in page.text
    assert "<code>issues:read</code>" in page.text and 'href="/api/openapi.json"' in page.text


def test_a_comparison_in_a_signed_off_issue_is_not_changed_by_the_api_nor_the_import(api, verdicts, tmp_path):
    """An approved issue's words were signed off as they are: a changed review through the API or a file would go
    out unapproved (and unrecorded). Both refuse, naming the issue; once it is a draft again, both work."""
    client, settings, token = api
    writer = token("site", "comparisons:write")
    with session_scope(settings.database_url) as session:
        issue = seed_issue(session, tmp_path, comparisons=2, readers=1)  # approved
    changed = comparison("cmp-0", days_ago(1))
    changed["reviews"][0]["verdict"] = "skip"
    _post(client, writer, [])  # the token's first use is recorded now, not during the refusal
    before = db_snapshot(settings.database_url)
    refused = _post(client, writer, changed)
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert f"'cmp-0' is in issue {issue.id}, which is approved" in refused.json()["detail"]
    by_file = verdicts("comparisons", "import", str(write_json(tmp_path / "changed.json", [changed])))
    assert by_file.code != 0 and f"issue {issue.id}, which is approved" in by_file.err
    assert db_snapshot(settings.database_url) == before  # nothing written, nothing on the trail

    assert verdicts("issue", "unapprove", str(issue.id)).code == 0
    assert _post(client, writer, changed).json()["updated"] == 1
    with session_scope(settings.database_url) as session:  # the site's change is on the trail, by its token's name
        [entry] = [e for e in audit.entries(session) if e.action == "comparisons.import"]
        assert entry.actor == "api:site" and "cmp-0" in str(entry.detail)
