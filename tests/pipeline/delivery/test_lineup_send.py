"""A send to readers with different interests: each gets their own line-up, and each distinct line-up is
rendered once, not each reader's copy."""

from __future__ import annotations

import dataclasses
import email
from email.policy import default

import pytest

from pipeline.delivery import send
from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.email.lint import Lint
from pipeline.errors import RenderError
from pipeline.store.db import session_scope
from pipeline.store.models import IssueStatus
from tests.lineup_seed import lineup_issue, lineup_of


def _sent(settings) -> dict[str, email.message.EmailMessage]:
    paths = [p for p in settings.outbox_dir.rglob("*.eml") if "confirmations" not in p.parts]
    messages = [email.message_from_bytes(p.read_bytes(), policy=default) for p in paths]
    return {m["To"].addresses[0].addr_spec: m for m in messages}


@pytest.fixture
def renders(monkeypatch):
    """Every line-up the send renders (the issue's own order is None)."""
    seen: list[object] = []
    real = send.render_issue

    def counted(session, issue, settings, **kwargs):
        seen.append(kwargs.get("lineup"))
        return real(session, issue, settings, **kwargs)

    monkeypatch.setattr(send, "render_issue", counted)
    return seen


def test_each_reader_gets_their_line_up_and_each_line_up_is_rendered_once(session, settings, tmp_path, renders):
    issue, expected = lineup_issue(settings, tmp_path, readers=40)
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    assert (summary.sent, summary.finished) == (40, True)
    sent = _sent(settings)
    assert sent.keys() == expected.keys()
    for address, message in sent.items():
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        assert lineup_of(text) == expected[address], address
        assert message["Subject"] == issue.subject  # the subject the editor approved, whatever the line-up
        if expected[address] == ["cmp-2"]:  # "only my interests" says what it left out, and where it is
            assert "2 more this week" in text and f"/issues/{issue.week}" in text
            assert "2 more this week" in html
        elif expected[address][0] != "cmp-0":
            assert "match your interests come first" in text and "/preferences/" in text
        else:
            assert "your interests" not in text
    # Four distinct line-ups among 40 readers: the issue's order (rendered first, to lint what was approved), then
    # the other three, each once.
    assert renders[0] is None and len(renders) == 4 and len(set(renders[1:])) == 3


def test_a_rerun_and_a_second_sender_render_only_what_they_meet(session, settings, tmp_path, renders):
    issue, _ = lineup_issue(settings, tmp_path, readers=8)
    settings = settings.model_copy(update={"batch_size": 2})  # many batches, each with a line-up or two
    assert send_issue(settings, issue.id, OutboxProvider(settings)).sent == 8
    assert len(renders) == 4  # not once per batch


def test_the_preflight_checks_every_line_up_before_anything_leaves(session, settings, tmp_path, monkeypatch):
    """A line-up that fails the checks (here: lint) stops the send before the audience is frozen, though the issue's
    own order passes."""
    issue, _ = lineup_issue(settings, tmp_path, readers=8)
    real = send.render_issue

    def one_line_up_too_big(session_, issue_, settings_, **kwargs):
        rendered = real(session_, issue_, settings_, **kwargs)
        if kwargs.get("lineup") is not None and len(kwargs["lineup"]) == 1:
            return dataclasses.replace(rendered, lint=Lint(rendered.lint.html_bytes, errors=["over Gmail's clip"]))
        return rendered

    monkeypatch.setattr(send, "render_issue", one_line_up_too_big)
    with pytest.raises(RenderError, match="over Gmail's clip"):
        send_issue(settings, issue.id, OutboxProvider(settings))
    assert not settings.outbox_dir.exists()
    with session_scope(settings.database_url) as s:
        from pipeline.content.issues import get_issue

        assert get_issue(s, issue.id).status is IssueStatus.approved


def test_a_reader_who_changes_interests_after_the_preflight_gets_the_new_line_up_checked(
    session, settings, tmp_path, monkeypatch
):
    from pipeline.delivery import messages
    from subscribers import service
    from subscribers.lookup import get_by_email

    issue, _ = lineup_issue(settings, tmp_path, readers=4)
    checked: list[list[str]] = []
    real_batch = messages.check_batch

    def record(rendered, recipients, *args):
        checked.append([r.email for r in recipients])
        return real_batch(rendered, recipients, *args)

    real_start = send.start_sending

    def change_then_start(session_, issue_, revision, **kwargs):
        with session_scope(settings.database_url) as other:  # between the preflight and the first claim
            service.set_interests(other, get_by_email(other, "reader0@example.com"), ["Writing"], True)
        return real_start(session_, issue_, revision, **kwargs)

    monkeypatch.setattr(send, "check_batch", record)
    monkeypatch.setattr(send, "start_sending", change_then_start)
    assert send_issue(settings, issue.id, OutboxProvider(settings)).sent == 4
    assert checked == [["reader0@example.com"]]  # the new line-up, on its reader, before it left
    text = _sent(settings)["reader0@example.com"].get_body(preferencelist=("plain",)).get_content()
    assert lineup_of(text) == ["cmp-1"]
