"""What the editor is told after approving: "the scheduler sends it at …" only while a scheduler beats;
otherwise that none runs, and what an operator does about it."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from pipeline.ops import heartbeat
from pipeline.store.models import utcnow
from tests.pipeline.web.test_editor import _client, _form_of, login


def _sending(client, issue_id: int) -> tuple[str, str] | None:
    """The page's note on what sends the issue: its kind (success or warning) and words."""
    page = client.get(f"/editor/issues/{issue_id}").text
    found = re.search(r'<div class="alert alert-(\w+)" role="status" data-testid="sending"><p>(.*?)</p>', page)
    return (found.group(1), html.unescape(found.group(2))) if found else None


def _approve(client, issue_id: int, at: str = ""):
    page = f"/editor/issues/{issue_id}"
    answer = client.post(f"{page}/approve", data={**_form_of(client, page), **({"at": at} if at else {})})
    assert answer.status_code == 303, answer.text
    return client.get(answer.headers["location"])


def test_without_a_scheduler_the_editor_is_told_nothing_will_send_it(editor_env):
    settings, issue_id = editor_env
    with _client(settings) as client:
        login(client)
        assert _sending(client, issue_id) is None  # a draft: nothing to say yet
        after = _approve(client, issue_id)
        assert "the scheduler sends it" not in after.text
        kind, words = _sending(client, issue_id)
        assert kind == "warning" and "no scheduler has ever run for this site" in words
        assert "`verdicts scheduler`" in words and f"`verdicts issue send {issue_id}`" in words

        heartbeat.save(
            settings.database_url,
            owner="sched:1",
            started_at=utcnow() - timedelta(days=2),
            beat_at=utcnow() - timedelta(hours=3),
        )  # it ran here, and stopped three hours ago
        kind, words = _sending(client, issue_id)
        assert kind == "warning" and "no scheduler is running (the scheduler last ran at " in words


def test_with_a_beating_scheduler_the_editor_is_told_when_it_sends(editor_env):
    settings, issue_id = editor_env
    now = utcnow()
    poll = (now + timedelta(minutes=3)).replace(second=0, microsecond=0)
    heartbeat.save(
        settings.database_url,
        owner="sched:1",
        started_at=now - timedelta(days=2),
        beat_at=now,
        next_poll_at=poll,
        next_run_at=now + timedelta(days=4),
    )
    with _client(settings) as client:
        login(client)
        after = _approve(client, issue_id)
        kind, words = _sending(client, issue_id)
        assert kind == "success"
        assert words == f"Approved: the scheduler sends it at {poll.astimezone(settings.tz):%Y-%m-%d %H:%M} (UTC)."
        assert words in html.unescape(after.text)

        # Scheduled for later: the scheduler's first look for approved issues from that moment (every 5 minutes).
        csrf = _form_of(client, f"/editor/issues/{issue_id}")["csrf"]
        client.post(f"/editor/issues/{issue_id}/unapprove", data={"csrf": csrf})
        at = (now + timedelta(days=1)).replace(second=0, microsecond=0)
        _approve(client, issue_id, at.strftime("%Y-%m-%dT%H:%M"))
        kind, words = _sending(client, issue_id)
        sends_at = datetime.strptime(words.split(" sends it at ")[1][:16], "%Y-%m-%d %H:%M").replace(tzinfo=settings.tz)
        assert kind == "success" and words.startswith("Scheduled: the scheduler sends it at ")
        assert at <= sends_at < at + timedelta(minutes=settings.send_poll_minutes)
        assert (sends_at - poll) % timedelta(minutes=5) == timedelta(0)
