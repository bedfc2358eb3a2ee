"""The command line records what an operator does as `cli:<OS user>`, and `verdicts audit` exports the trail
(CSV and JSON, parsed back) and verifies its chain, naming the first entry tampered with."""

from __future__ import annotations

import csv
import getpass
import io
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from pipeline.content.issues import get_issue
from pipeline.delivery.ledger import pause, start_sending
from pipeline.store import audit
from pipeline.store.db import get_engine, session_scope
from pipeline.store.models import utcnow
from subscribers.service import add_subscriber
from tests.conftest import NOW, comparison, days_ago, seed_issue, write_json

ME = f"cli:{getpass.getuser()}"


@pytest.fixture
def site(settings, monkeypatch):
    monkeypatch.setenv("VERDICTS_BASE_URL", "http://127.0.0.1:8000")  # a development host: the test key may send
    with session_scope(settings.database_url) as s:
        for name in ("ana", "ben", "cy"):
            add_subscriber(s, f"{name}@example.com", name.title(), confirmed=True)
    return settings


def _entries(settings) -> list[audit.AuditEntry]:
    with session_scope(settings.database_url) as s:
        return list(audit.entries(s))


def test_each_operator_command_records_its_action_and_no_readers_address(site, verdicts, workdir):
    later = (utcnow() + timedelta(days=2)).isoformat()
    write_json(workdir / "week.json", [comparison(f"cmp-{i}", days_ago(1 + i / 10)) for i in range(2)])
    steps = [  # (the command, the action recorded, whether it is about issue 1)
        (["comparisons", "import", "week.json"], "comparisons.import", False),
        (["issue", "build", "--now", NOW.isoformat()], "issue.build", True),
        (["issue", "edit", "1", "--subject", "Typed by hand"], "issue.edit", True),
        (["issue", "test-send", "1", "--to", "ed@verdicts.example.com"], "issue.test_send", True),
        (["issue", "approve", "1", "--at", later], "issue.schedule", True),
        (["issue", "unapprove", "1"], "issue.cancel", True),
        (["issue", "approve", "1"], "issue.approve", True),
        (["issue", "send", "1"], "issue.send", True),
        (["subscribers", "remove", "ana@example.com"], "subscriber.unsubscribe", False),
        (["subscribers", "suppress", "stranger@example.com"], "subscriber.suppress", False),
        (["subscribers", "erase", "ben@example.com", "--yes"], "subscriber.erase", False),
    ]
    for args, action, about_issue in steps:
        result = verdicts(*args)
        assert result.code == 0, (args, result.err)
        last = _entries(site)[-1]
        assert (last.actor, last.action, last.issue_id) == (ME, action, 1 if about_issue else None), args
    entries = _entries(site)
    assert [e.action for e in entries] == [action for _, action, _ in steps]
    assert json.loads(entries[0].detail)["slugs"] == ["cmp-0", "cmp-1"]
    assert json.loads(entries[2].detail)["subject"]["after"] == "Typed by hand"
    assert json.loads(entries[7].detail) == {"audience": 3}
    assert json.loads(entries[8].detail)["reader"] == "a***@example.com"
    trail = " ".join(e.detail for e in entries)
    assert not any(f"{who}@example.com" in trail for who in ("ana", "ben", "stranger"))
    # Refused or unchanged: nothing more is recorded.
    assert verdicts("subscribers", "erase", "cy@example.com").code == 4  # without --yes
    assert verdicts("subscribers", "remove", "ana@example.com").code == 0  # had already left
    assert verdicts("issue", "edit", "1", "--subject", "Too late").code != 0  # sent
    assert len(_entries(site)) == len(steps)


def test_a_paused_send_resumed_from_the_command_line_is_recorded(site, verdicts, workdir):
    with session_scope(site.database_url) as s:
        issue = seed_issue(s, workdir, readers=0)
        start_sending(s, issue)
        pause(s, issue, "the provider was down")
    assert verdicts("issue", "send", str(issue.id)).code == 0
    with session_scope(site.database_url) as s:
        assert get_issue(s, issue.id).status.value == "sent"
    (entry,) = _entries(site)
    assert (entry.actor, entry.action, json.loads(entry.detail)) == (
        ME,
        "issue.resume",
        {"paused": "the provider was down"},
    )


def test_export_as_csv_and_json_with_filters_and_verify(site, verdicts, workdir):
    with session_scope(site.database_url) as s:
        issue = seed_issue(s, workdir, approved=False)
    assert verdicts("issue", "edit", str(issue.id), "--subject", "One").code == 0
    assert verdicts("subscribers", "suppress", "stranger@example.com").code == 0
    assert verdicts("issue", "edit", str(issue.id), "--intro", "Hello, *readers*").code == 0

    rows = list(csv.DictReader(io.StringIO(verdicts("audit", "export").out)))
    assert [r["action"] for r in rows] == ["issue.edit", "subscriber.suppress", "issue.edit"]
    assert rows[0]["actor"] == ME and rows[0]["issue_id"] == str(issue.id) and rows[0]["issue_revision"] == "1"
    assert json.loads(rows[0]["detail"])["subject"]["after"] == "One"
    assert rows[1]["issue_id"] == "" and len(rows[2]["hash"]) == 64

    listed = json.loads(verdicts("audit", "export", "--issue", str(issue.id), "--format", "json").out)
    assert [(e["id"], e["issue_revision"]) for e in listed] == [(1, 1), (3, 2)]
    assert listed[1]["detail"]["intro"]["after"] == "Hello, *readers*"
    assert json.loads(verdicts("audit", "export", "--since", "2999-01-01", "--format", "json").out) == []
    assert verdicts("audit", "export", "--since", "last week").code == 4

    held = verdicts("audit", "verify")
    assert held.code == 0 and "3 entries" in held.out
    noted = held.err.split("Last hash: ")[1].split()[0]
    assert verdicts("audit", "verify", "--expect", noted).code == 0
    with get_engine(site.database_url).begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET detail = '{}' WHERE id = 2"))
    broken = verdicts("audit", "verify")
    assert broken.code == 1 and "entry 2 " in broken.err and "(the 1 before it are intact)" in broken.err


def test_the_weekly_run_records_as_the_scheduler_or_as_whoever_ran_it_by_hand(site, verdicts, workdir, monkeypatch):
    from pipeline.config import get_settings
    from pipeline.ops.weekly import run_weekly

    monkeypatch.setenv("VERDICTS_REQUIRE_APPROVAL", "false")
    get_settings.cache_clear()
    write_json(workdir / "week.json", [comparison("cmp-a", days_ago(1))])
    assert verdicts("comparisons", "import", "week.json").code == 0
    run_weekly(get_settings(), NOW)
    assert [(e.actor, e.action) for e in _entries(site)[1:]] == [
        ("scheduler", "issue.build"),
        ("scheduler", "issue.approve"),
        ("scheduler", "issue.send"),
    ]
    write_json(workdir / "next.json", [comparison("cmp-b", NOW + timedelta(days=6))])
    assert verdicts("comparisons", "import", "next.json").code == 0
    assert verdicts("run-weekly", "--now", (NOW + timedelta(days=7)).isoformat()).code == 0
    assert [(e.actor, e.action) for e in _entries(site)[5:]] == [
        (ME, "issue.build"),
        (ME, "issue.approve"),
        (ME, "issue.send"),
    ]
