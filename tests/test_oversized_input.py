"""Oversized input is refused before it is read: import files by their size on disk (a clear
error naming the file, the size, the limit and the fix), request bodies by Content-Length or,
sent without one, as soon as the stream passes the limit. Nothing changes either way."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from pipeline.config import get_settings
from pipeline.web.app import create_app
from tests.conftest import comparison, days_ago, db_snapshot, seed_issue, write_json
from tests.pipeline.web.test_editor import PASSWORD, csrf_of, login

MB = 1024 * 1024


def _sparse(path: Path, size: int) -> Path:
    """A file that is ``size`` bytes to stat but costs no disk: refusing it must not read it."""
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def test_a_comparison_file_over_the_limit_is_refused_by_its_size_and_nothing_is_written(verdicts, settings, workdir):
    good = write_json(workdir / "good.json", [comparison("fine", days_ago(1))])
    big = _sparse(workdir / "big.json", 21 * MB)  # the default limit is 20 MB
    before = db_snapshot(settings.database_url)
    result = verdicts("comparisons", "import", str(good), str(big))
    assert result.code == 4
    assert result.err == (
        f"error: {big}: the file is 21.0 MB (22,020,096 bytes), over the 20 MB limit: split it into "
        "smaller files, or raise VERDICTS_IMPORT_MAX_MB if it really is that large\n"
    )
    assert db_snapshot(settings.database_url) == before
    assert verdicts("comparisons", "import", str(good)).code == 0  # under the limit, as ever


def test_the_import_limit_is_a_setting_and_a_device_is_read_no_further_than_it(verdicts, settings, monkeypatch):
    monkeypatch.setenv("VERDICTS_IMPORT_MAX_MB", "0.01")
    before = db_snapshot(settings.database_url)
    # stat cannot tell how much /dev/zero holds: the read stops one byte past the limit.
    result = verdicts("comparisons", "import", "/dev/zero")
    assert result.code == 4 and "/dev/zero: the file is more than 0.01 MB, over the 0.01 MB limit" in result.err
    assert "VERDICTS_IMPORT_MAX_MB" in result.err and db_snapshot(settings.database_url) == before


def test_a_subscriber_csv_over_the_limit_is_refused_by_its_size_and_nothing_is_written(
    verdicts, settings, workdir, monkeypatch
):
    rows = "email,name\n" + "".join(f"r{i}@example.com,Reader {i}\n" for i in range(100))
    (workdir / "readers.csv").write_text(rows)
    big = _sparse(workdir / "big.csv", 51 * MB)  # the default limit is 50 MB
    before = db_snapshot(settings.database_url)
    result = verdicts("subscribers", "import", str(big), "--confirmed")
    assert result.code == 4
    assert result.err == (
        f"error: {big}: the file is 51.0 MB (53,477,376 bytes), over the 50 MB limit: split it into "
        "smaller files, or raise VERDICTS_CSV_IMPORT_MAX_MB if it really is that large\n"
    )
    monkeypatch.setenv("VERDICTS_CSV_IMPORT_MAX_MB", "0.001")
    small_limit = verdicts("subscribers", "import", "readers.csv", "--confirmed")
    assert small_limit.code == 4 and "over the 0.001 MB limit" in small_limit.err
    assert db_snapshot(settings.database_url) == before


@pytest.fixture
def limits(workdir, monkeypatch) -> None:
    """Small limits keep the bodies small; the defaults are 256 KB for forms and 5 MB for webhooks."""
    monkeypatch.setenv("VERDICTS_FORM_MAX_BODY_KB", "16")
    monkeypatch.setenv("VERDICTS_WEBHOOK_MAX_BODY_MB", "0.1")
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", PASSWORD)
    get_settings.cache_clear()


@pytest.fixture
def app_client(limits, settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        yield client


def _chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), as a client that does not say its size sends it."""
    for _ in range(total // size):
        yield b"a" * size


def test_oversized_forms_and_webhooks_are_refused_with_413_and_change_nothing(app_client, settings, workdir, session):
    issue = seed_issue(session, workdir, readers=1, approved=False)
    login(app_client)
    csrf = csrf_of(app_client)
    before = db_snapshot(settings.database_url)
    big_form = {"email": "new@example.com", "name": "x" * 20_000, "csrf": csrf, "subject": "S", "intro": "x" * 20_000}
    for path in (
        "/subscribe",
        f"/editor/issues/{issue.id}/edit",
        "/vote/made-up-token/alpha/ship",
        "/preferences/t/name",
    ):
        response = app_client.post(path, data=big_form)
        assert response.status_code == 413 and "That request was too large." in response.text, path
        assert response.headers["x-content-type-options"] == "nosniff"  # the early answer is a normal page
    # Without Content-Length the cut comes while a form is read (the vote POST reads no body at all).
    for path in ("/subscribe", f"/editor/issues/{issue.id}/edit", "/preferences/t/name"):
        streamed = app_client.post(
            path, content=_chunks(64 * 1024), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert streamed.status_code == 413 and "That request was too large." in streamed.text, path
    for provider in ("postmark", "sendgrid", "mailgun", "resend", "ses"):
        assert app_client.post(f"/webhooks/{provider}", content=b"{" * 200_000).status_code == 413
        assert app_client.post(f"/webhooks/{provider}", content=_chunks(200_000)).status_code == 413
    assert db_snapshot(settings.database_url) == before
    # Each limit is per path: a 50 KB webhook is over the form limit but reaches verification.
    assert app_client.post("/webhooks/postmark", content=b"x" * 50_000).status_code in (400, 401)
    ok = app_client.post(
        f"/editor/issues/{issue.id}/edit",
        data={"csrf": csrf, "revision": issue.revision, "subject": "Still editable", "intro": "Short."},
    )
    assert ok.status_code == 303


@pytest.fixture
def server(limits, request) -> tuple[str, int]:
    base, _settings = request.getfixturevalue("live_server")
    parts = urlsplit(base)
    return parts.hostname, parts.port


def _status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return int(head.split(b" ", 2)[1])


def test_a_declared_oversized_body_is_answered_before_any_of_it_is_sent(server):
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        assert _status(sock) == 413  # not one byte of the 100 MB was sent


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(server):
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"POST /webhooks/postmark HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        while not select.select([sock], [], [], 0)[0]:
            assert sent < 20 * MB, "the server kept reading far past the 0.1 MB limit"
            sock.sendall(b"1000\r\n" + b"a" * 4096 + b"\r\n")
            sent += 4096
        assert _status(sock) == 413 and sent > 0.1 * MB  # answered mid-body: the final chunk was never sent
