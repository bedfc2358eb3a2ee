"""Selecting the week's new comparisons and the one-issue-per-week rule."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.content.importing import load_files, upsert
from pipeline.content.issues import approve, build_issue, default_subject, iso_week, issue_comparisons
from pipeline.errors import InvalidState
from tests.conftest import NOW, comparison, days_ago, seed_issue, write_json

UTC = ZoneInfo("UTC")


def _import(session, tmp_path, *items):
    upsert(session, load_files([write_json(tmp_path / f"{items[0]['slug']}.json", list(items))]))


def _build(session, now=NOW, cap=5):
    return build_issue(session, now=now, tz=UTC, max_comparisons=cap)


def test_first_issue_takes_last_seven_days_newest_first_never_future(session, tmp_path):
    _import(
        session,
        tmp_path,
        comparison("old", days_ago(8)),
        comparison("mid", days_ago(3)),
        comparison("new", days_ago(0.5)),
        comparison("future", NOW + timedelta(hours=1)),
    )
    result = _build(session)
    assert result.created and result.issue.week == "2026-W48"
    assert [c.slug for c in issue_comparisons(session, result.issue)] == ["new", "mid"]


def test_cap_and_more_count(session, tmp_path):
    _import(session, tmp_path, *[comparison(f"c{i}", days_ago(i / 10)) for i in range(7)])
    issue = _build(session, cap=5).issue
    assert [c.slug for c in issue_comparisons(session, issue)] == ["c0", "c1", "c2", "c3", "c4"]
    assert issue.more_count == 2
    assert issue.subject == "Alpha c0 vs Beta c0 + 4 more"


def test_the_words_the_build_writes_fit_their_columns_whatever_the_titles(session, tmp_path):
    """Titles may be 300 characters, the subject and preheader columns too: PostgreSQL refused the
    build (SQLite kept the overlong text)."""
    long_titles = [comparison(f"c{i}", days_ago(i / 10), title=f"{i} " + "Long title " * 27) for i in range(5)]
    _import(session, tmp_path, *long_titles)
    issue = _build(session).issue
    session.commit()
    session.refresh(issue)
    assert len(issue.subject) <= 300 and issue.subject.endswith("… + 4 more")
    assert len(issue.preheader) <= 300 and issue.preheader.startswith("Also this week: 1 Long title")
    assert issue.preheader.endswith("; and 3 more")


def test_building_twice_returns_the_same_draft(session, tmp_path):
    _import(session, tmp_path, comparison("a", days_ago(1)))
    first = _build(session)
    again = _build(session, now=NOW + timedelta(days=2))  # still ISO week 48
    assert not again.created and again.issue.id == first.issue.id and "already exists" in again.message


def test_nothing_new_means_no_issue(session, tmp_path):
    _import(session, tmp_path, comparison("stale", days_ago(10)))
    result = _build(session)
    assert result.issue is None and "No new comparisons" in result.message


def test_next_issue_starts_at_the_previous_cutoff_and_never_repeats(session, tmp_path):
    _import(session, tmp_path, comparison("week1", days_ago(1)))
    first = _build(session).issue
    # Imported after the cut-off: one published just before it (it missed issue 1), one far too old, one new.
    _import(
        session,
        tmp_path,
        comparison("late", days_ago(0.1)),
        comparison("ancient", days_ago(30)),
        comparison("week2", NOW + timedelta(days=5)),
    )
    second = _build(session, now=NOW + timedelta(days=7)).issue
    assert second.id != first.id and second.week == "2026-W49"
    assert [c.slug for c in issue_comparisons(session, second)] == ["week2", "late"]


def test_iso_week_uses_the_newsletter_time_zone():
    sunday_late_utc = NOW.replace(day=29, hour=23, minute=30)  # Sunday 23:30 UTC = Monday in Berlin
    assert iso_week(sunday_late_utc, UTC) == "2026-W48"
    assert iso_week(sunday_late_utc, ZoneInfo("Europe/Berlin")) == "2026-W49"


def test_default_subject():
    assert default_subject(["A vs B"]) == "A vs B"
    assert default_subject(["A vs B", "C vs D"]) == "A vs B + 1 more"
    # The usual title fits whole; a longer one gives way at a word (lint warns over 60 characters)
    assert (
        default_subject(["Claude Haiku Open Weights vs Mistral Code", "x", "y"])
        == "Claude Haiku Open Weights vs Mistral Code + 2 more"
    )
    assert default_subject(["Claude Haiku Open Weights vs Mistral Code — which one should you ship?", "x"]) == (
        "Claude Haiku Open Weights vs Mistral Code — which… + 1 more"
    )


def test_only_drafts_can_be_approved(session, tmp_path):
    _import(session, tmp_path, comparison("a", days_ago(1)))
    issue = _build(session).issue
    approve(session, issue)
    assert issue.status.value == "approved"
    approve(session, issue)  # idempotent
    issue.status = type(issue.status)("sent")
    with pytest.raises(InvalidState, match="only a draft"):
        approve(session, issue)


def test_cli_build_prints_the_id_and_exits_zero_when_nothing_new(verdicts, settings, tmp_path):
    empty = verdicts("issue", "build", "--now", NOW.isoformat())
    assert empty.code == 0 and empty.out == "" and "No new comparisons" in empty.err
    verdicts("comparisons", "import", str(write_json(tmp_path / "c.json", comparison("a", days_ago(1)))))
    built = verdicts("issue", "build", "--now", NOW.isoformat())
    assert built.code == 0 and built.out.strip() == "1"
    again = verdicts("issue", "build", "--now", NOW.isoformat())
    assert again.out.strip() == "1" and "already exists" in again.err


def test_cli_now_without_zone_is_refused(verdicts, settings):
    result = verdicts("issue", "build", "--now", "2026-11-25T12:00:00")
    assert result.code == 4 and "no time zone" in result.err


@hsettings(max_examples=200, deadline=None)
@given(titles=st.lists(st.text(min_size=1, max_size=300).map(str.strip).filter(bool), min_size=1, max_size=6))
def test_the_builds_own_subject_never_draws_lints_length_warning(titles):
    """The build wrote 62- and 71-character subjects that its own lint then warned about."""
    from pipeline.content.issues import SUBJECT_CHARS

    subject = default_subject(titles)
    assert 0 < len(subject) <= SUBJECT_CHARS
    assert subject.startswith(titles[0]) or subject.split("…")[0] in titles[0]


def test_a_built_issue_of_long_titles_has_no_lint_warning_about_its_subject(session, settings, tmp_path):
    from pipeline.email.render import render_issue

    long = "Claude Haiku Open Weights vs Mistral Code — which one should you ship with?"
    items = [comparison(f"c{i}", days_ago(1 + i / 10), title=f"{long} {i}") for i in range(3)]
    issue = seed_issue(session, tmp_path, items=items, approved=False)
    assert issue.subject == "Claude Haiku Open Weights vs Mistral Code — which… + 2 more"
    assert not [w for w in render_issue(session, issue, settings).lint.warnings if "subject" in w]
