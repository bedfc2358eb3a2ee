"""Every change an editor makes over HTTP is in the audit trail (who, what, which revision), a refused one is
not, and the issue page shows the history newest first."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from pipeline.content.importing import load_files, upsert
from pipeline.content.issues import get_issue, issue_comparisons
from pipeline.store import audit
from pipeline.store.db import session_scope
from pipeline.store.models import utcnow
from pipeline.web.pages import SHARED_EDITOR
from tests.conftest import comparison, write_json
from tests.pipeline.web.test_editor import _client, _form_of, csrf_of, login


def _last(settings, issue_id: int | None = None):
    with session_scope(settings.database_url) as s:
        entries = list(audit.entries(s, issue_id))
        return entries[-1] if entries else None, len(entries)


def _ids(settings, issue_id: int) -> list[int]:
    with session_scope(settings.database_url) as s:
        return [c.id for c in issue_comparisons(s, get_issue(s, issue_id))]


def test_each_editor_action_over_http_records_who_what_and_the_revision(editor_env):
    settings, issue_id = editor_env
    page = f"/editor/issues/{issue_id}"
    later = (utcnow() + timedelta(days=3)).astimezone(settings.tz).strftime("%Y-%m-%dT%H:%M")
    first, second = _ids(settings, issue_id)[:2]
    steps = [  # (path under the issue, form, the action recorded, a field of its detail and what it holds)
        ("/edit", {"subject": "Fresh words"}, "issue.edit", "subject", {"after": "Fresh words"}),
        (f"/items/{second}/up", {}, "issue.reorder", "comparisons", None),
        (f"/items/{first}/drop", {}, "issue.drop", "comparisons", None),
        ("/test-send", {"to": ["chief@verdicts.example.com"]}, "issue.test_send", "to", ["chief@verdicts.example.com"]),
        ("/approve", {"at": later}, "issue.schedule", "status", {"before": "draft", "after": "approved"}),
        ("/unapprove", {}, "issue.cancel", "status", {"before": "approved", "after": "draft"}),
        ("/approve", {}, "issue.approve", "status", {"before": "draft", "after": "approved"}),
        ("/unapprove", {}, "issue.unapprove", "status", {"before": "approved", "after": "draft"}),
    ]
    with _client(settings) as client:
        login(client)
        for path, form, action, field, held in steps:
            response = client.post(page + path, data={**_form_of(client, page), **form})
            assert response.status_code == 303, (path, response.text[:300])
            entry, _ = _last(settings, issue_id)
            with session_scope(settings.database_url) as s:
                revision = get_issue(s, issue_id).revision
            assert (entry.actor, entry.action, entry.issue_revision) == (SHARED_EDITOR, action, revision), path
            detail = json.loads(entry.detail)
            assert field in detail, (action, detail)
            if isinstance(held, dict):
                assert held.items() <= detail[field].items(), (action, detail)
            elif held is not None:
                assert detail[field] == held
        reorder = json.loads(_by_action(settings, issue_id, "issue.reorder").detail)["comparisons"]
        assert reorder["after"][:2] == reorder["before"][1::-1]  # the second came first
        assert "scheduled_for" in json.loads(_by_action(settings, issue_id, "issue.schedule").detail)

        _, count = _last(settings)
        stale = client.post(f"{page}/edit", data={"csrf": csrf_of(client), "revision": "0", "subject": "Old page"})
        assert stale.status_code == 409
        again = client.post(f"{page}/unapprove", data={"csrf": csrf_of(client)})  # a draft already: nothing changed
        assert again.status_code == 303
        assert _last(settings)[1] == count

        history = client.get(page).text
    rows = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td><td><strong>([^<]+)</strong>", history)
    assert [action for _, action in rows] == [step[2] for step in reversed(steps)]
    assert {who for who, _ in rows} == {SHARED_EDITOR}
    assert "subject: &#39;" in history and "&#39;Fresh words&#39;" in history  # before → after, escaped


def _by_action(settings, issue_id: int, action: str):
    with session_scope(settings.database_url) as s:
        return next(e for e in audit.entries(s, issue_id) if e.action == action)


def test_building_this_weeks_issue_from_the_editor_is_recorded_once(editor_env):
    settings, _ = editor_env
    fresh = comparison("fresh-one", utcnow() - timedelta(hours=1))
    with session_scope(settings.database_url) as s:
        upsert(s, load_files([write_json(settings.outbox_dir.parent / "fresh.json", [fresh])]))
    with _client(settings) as client:
        login(client)
        built = client.post("/editor/build", data={"csrf": csrf_of(client)})
        assert built.headers["location"].endswith("done=built")
        assert client.post("/editor/build", data={"csrf": csrf_of(client)}).headers["location"].endswith("done=exists")
        issue_id = int(built.headers["location"].split("/")[3].split("?")[0])
        assert "issue.build" in client.get(f"/editor/issues/{issue_id}").text
    entry, count = _last(settings)
    assert count == 1 and (entry.action, entry.issue_id, entry.actor) == ("issue.build", issue_id, SHARED_EDITOR)
    assert json.loads(entry.detail)["comparisons"] == ["fresh-one"]
