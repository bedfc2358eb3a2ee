"""Editor sessions live on the server: the cookie is a random id, the database row decides, and
logging out ends the session for every copy of the cookie."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sqlalchemy as sa

from pipeline.config import get_settings
from pipeline.store.db import get_engine
from pipeline.store.models import EditorSession, utcnow
from tests.pipeline.web.test_editor import _client, csrf_of, login


def _rows(settings) -> list:
    with get_engine(settings.database_url).connect() as conn:
        return conn.execute(sa.select(EditorSession.__table__)).all()


def _copy(settings, cookies):
    thief = _client(settings)
    thief.cookies = cookies
    return thief


def test_a_copied_cookie_stops_working_when_its_session_logs_out(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as editor:
        assert login(editor).status_code == 303
        with _copy(settings, editor.cookies) as copy:
            assert copy.get("/editor").status_code == 200  # the copy works while the session lasts
            csrf = csrf_of(editor)
            assert editor.post("/editor/logout", data={"csrf": csrf}).status_code == 303
            assert _rows(settings) == []
            assert copy.get("/editor").status_code == 303
            refused = copy.post(f"/editor/issues/{issue_id}/edit", data={"subject": "Hijacked", "csrf": csrf})
            assert refused.status_code == 403 and "Your editor session has ended" in refused.text


def test_the_cookie_is_a_random_id_and_the_database_keeps_only_its_hash(editor_env):
    settings, _ = editor_env
    with _client(settings) as first, _client(settings) as second:
        login(first)
        login(second)
        tokens = [c.cookies.get("verdicts_editor") for c in (first, second)]
        [row_a, row_b] = _rows(settings)
        assert {row_a.token_hash, row_b.token_hash} == {hashlib.sha256(t.encode()).hexdigest() for t in tokens}
        assert all(t not in (row_a.csrf, row_b.csrf, row_a.token_hash, row_b.token_hash) for t in tokens)
        assert row_a.csrf != row_b.csrf and all(r.csrf not in t for r in (row_a, row_b) for t in tokens)
        length = timedelta(hours=settings.editor_session_hours)
        assert all(abs(r.expires_at - r.created_at - length) < timedelta(seconds=1) for r in (row_a, row_b))
        # Logging one out leaves the other.
        first.post("/editor/logout", data={"csrf": csrf_of(first)})
        assert second.get("/editor").status_code == 200 and len(_rows(settings)) == 1


def test_a_session_past_its_expiry_or_a_shortened_session_length_is_refused(editor_env, monkeypatch):
    settings, _ = editor_env
    with _client(settings) as client:
        login(client)
        with get_engine(settings.database_url).begin() as conn:
            conn.execute(sa.update(EditorSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert client.get("/editor").status_code == 303
        login(client)
        assert client.get("/editor").status_code == 200
        assert len(_rows(settings)) == 1  # a login deletes expired sessions
        with get_engine(settings.database_url).begin() as conn:
            conn.execute(sa.update(EditorSession).values(created_at=utcnow() - timedelta(hours=2)))
        monkeypatch.setenv("VERDICTS_EDITOR_SESSION_HOURS", "1")
        get_settings.cache_clear()
        with _copy(get_settings(), client.cookies) as later:
            assert later.get("/editor").status_code == 303


def test_a_new_password_ends_every_session_and_its_rows_go(editor_env, monkeypatch):
    settings, _ = editor_env
    with _client(settings) as client:
        login(client)
        monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", "a brand new passphrase")
        get_settings.cache_clear()
        renewed = get_settings()
        with _client(renewed) as other:
            other.cookies = client.cookies
            assert other.get("/editor").status_code == 303
            assert login(other, "a brand new passphrase").status_code == 303
        assert len(_rows(settings)) == 1  # only the new password's session is kept
