"""The audit trail itself: one transaction with the change, a hash chain that names the first tampered entry,
and writers on several threads that keep one chain."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from pipeline.content import editing
from pipeline.content.audited import audited
from pipeline.content.issues import get_issue
from pipeline.store import audit
from pipeline.store.db import get_engine, session_scope
from tests.conftest import seed_issue


def _trail(url: str, n: int) -> None:
    with session_scope(url) as session:
        for i in range(n):
            audit.record(session, "cli:ana", "comparisons.import", detail={"created": i})


def _sql(url: str, statement: str) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(sa.text(statement))


def test_an_entry_is_written_with_the_change_and_rolled_back_with_it(settings, session, workdir):
    issue = seed_issue(session, workdir, approved=False)
    with session_scope(settings.database_url) as s:
        draft = get_issue(s, issue.id)
        with audited(s, "cli:ana", "issue.edit", draft):
            editing.edit(s, draft, subject="New words")
    with pytest.raises(RuntimeError), session_scope(settings.database_url) as s:
        draft = get_issue(s, issue.id)
        with audited(s, "cli:ben", "issue.edit", draft):
            editing.edit(s, draft, subject="Words that never were")
        raise RuntimeError("the command failed after the change and its entry")
    with session_scope(settings.database_url) as s:
        entries = list(audit.entries(s, issue.id))
        assert get_issue(s, issue.id).subject == "New words"
    assert [(e.actor, e.action, e.issue_revision) for e in entries] == [("cli:ana", "issue.edit", 1)]
    assert '"after":"New words"' in entries[0].detail and "never were" not in entries[0].detail


def test_a_refused_change_leaves_no_entry(settings, session, workdir):
    issue = seed_issue(session, workdir, approved=True)
    with pytest.raises(editing.InvalidState), session_scope(settings.database_url) as s:
        locked = get_issue(s, issue.id)
        with audited(s, "cli:ana", "issue.edit", locked):
            editing.edit(s, locked, subject="Locked")
    with session_scope(settings.database_url) as s:
        assert list(audit.entries(s)) == []
        assert audit.verify(s).ok


def test_verify_holds_for_an_untouched_trail_and_names_an_edited_entry(settings):
    _trail(settings.database_url, 5)
    with session_scope(settings.database_url) as s:
        verdict = audit.verify(s)
    assert verdict.ok and verdict.checked == 5
    _sql(settings.database_url, "UPDATE audit_entry SET actor = 'cli:someone-else' WHERE id = 3")
    with session_scope(settings.database_url) as s:
        verdict = audit.verify(s)
    assert not verdict.ok and verdict.checked == 2
    assert verdict.broken.startswith("entry 3 ") and "changed after it was written" in verdict.broken


def test_verify_names_an_entry_deleted_from_the_middle_and_from_the_end(settings):
    _trail(settings.database_url, 5)
    _sql(settings.database_url, "DELETE FROM audit_entry WHERE id = 5")
    with session_scope(settings.database_url) as s:
        assert audit.verify(s).broken == "the trail ends at entry 4 but 5 were written: the last 1 entry was deleted"
    _sql(settings.database_url, "DELETE FROM audit_entry WHERE id = 2")
    with session_scope(settings.database_url) as s:
        assert audit.verify(s).broken == "entry 2 is missing (deleted): the chain breaks before entry 3"


def test_a_rewritten_chain_verifies_but_has_lost_the_hash_noted_before(settings):
    """Whoever rewrites every hash (and the head) passes verify: the hash noted elsewhere is what catches them."""
    _trail(settings.database_url, 3)
    with session_scope(settings.database_url) as s:
        noted = audit.verify(s).head
        assert audit.holds(s, noted)
    _sql(settings.database_url, "DELETE FROM audit_entry")
    _sql(settings.database_url, "DELETE FROM audit_head")
    _trail(settings.database_url, 3)  # a forged history, chained correctly
    with session_scope(settings.database_url) as s:
        assert audit.verify(s).ok and not audit.holds(s, noted)


def test_writers_on_many_threads_keep_one_unbroken_chain(settings):
    """Each thread appends in its own transaction, after a read of its own: without the head's lock two would
    chain to the same entry (a fork) or take the same id."""
    url, threads, each = settings.database_url, 6, 8
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with Session(get_engine(url)) as s:
                    s.exec(sa.select(sa.literal(1)))  # a read first: the snapshot a careless writer chains to
                    audit.record(s, f"cli:writer{n}", "comparisons.import", detail={"n": i})
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    with session_scope(url) as s:
        verdict = audit.verify(s)
        ids = [e.id for e in audit.entries(s)]
    assert verdict.ok, verdict.broken
    assert ids == list(range(1, threads * each + 1))
