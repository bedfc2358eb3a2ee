"""CSV import/export of readers: a row-level report, and nothing written when a row is bad."""

from __future__ import annotations

import csv
import io

from sqlmodel import col, select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from subscribers import csvio
from subscribers.addresses import email_hash
from subscribers.consent import Evidence
from subscribers.csvio import FORMULA_STARTS
from subscribers.lookup import get_by_email, readers
from subscribers.models import ConsentEvent, ConsentRecord, SubscriberStatus
from subscribers.privacy import erase
from tests.conftest import db_snapshot, seed_issue

GOOD = "email,name\nada@example.com,Ada Lovelace\nGrace@Example.ORG,Grace\n"


def test_import_then_export_round_trip(verdicts, settings, tmp_path, session):
    (tmp_path / "r.csv").write_text(GOOD, encoding="utf-8")
    result = verdicts("subscribers", "import", "r.csv", "--confirmed")
    assert result.code == 0 and "2 added" in result.out
    again = verdicts("subscribers", "import", "r.csv", "--confirmed")
    assert "2 unchanged" in again.out
    exported = verdicts("subscribers", "export").out
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["email"], r["name"], r["status"], r["source"]) for r in rows] == [
        ("ada@example.com", "Ada Lovelace", "confirmed", "csv"),
        ("grace@example.org", "Grace", "confirmed", "csv"),
    ]
    assert verdicts("subscribers", "export", "out.csv").code == 0
    assert (tmp_path / "out.csv").read_text().startswith("email,name,status")


def test_one_bad_row_writes_nothing_and_names_the_line(verdicts, settings, tmp_path):
    (tmp_path / "r.csv").write_text(GOOD + "not-an-address,X\nada@example.com,Dup\n", encoding="utf-8")
    before = db_snapshot(settings.database_url)
    result = verdicts("subscribers", "import", "r.csv")
    assert result.code == 1
    assert "2 bad row(s), nothing imported; first at line 4" in result.err and "--skip-invalid" in result.err
    assert db_snapshot(settings.database_url) == before


def test_a_bad_row_after_rounds_already_written_still_leaves_the_database_as_it_was(
    verdicts, settings, tmp_path, session, monkeypatch
):
    """Rows are written a round at a time as the file is read: a bad row near the end must undo them all."""
    monkeypatch.setattr(csvio, "ROUND", 2)
    rows = "".join(f"r{i}@example.com,R {i}\n" for i in range(7))
    (tmp_path / "r.csv").write_text(
        f"email,name\n{rows}r2@example.com,Again\nbroken@,X\nr9@example.com,R 9\n", encoding="utf-8"
    )
    before = db_snapshot(settings.database_url)
    result = verdicts("subscribers", "import", "r.csv", "--report", "bad.csv")
    assert result.code == 1 and "2 bad row(s), nothing imported; first at line 9: same address as line 4" in result.err
    assert db_snapshot(settings.database_url) == before
    assert [r["line"] for r in csv.DictReader((tmp_path / "bad.csv").open())] == ["9", "10"]
    assert verdicts("subscribers", "import", "r.csv", "--skip-invalid").code == 0
    assert len(list(readers(session))) == 8


def test_skip_invalid_imports_the_good_rows_and_reports_the_bad(verdicts, settings, tmp_path, session):
    (tmp_path / "r.csv").write_text(GOOD + "nope@,X\n", encoding="utf-8")
    result = verdicts("subscribers", "import", "r.csv", "--skip-invalid")
    assert result.code == 0 and "2 added" in result.out and "1 invalid" in result.out
    assert "line 4: nope@: invalid" in result.err
    assert [s.status for s in readers(session)] == [SubscriberStatus.pending] * 2


def test_missing_email_column(verdicts, settings, tmp_path):
    (tmp_path / "r.csv").write_text("address,name\nada@example.com,Ada\n", encoding="utf-8")
    result = verdicts("subscribers", "import", "r.csv")
    assert result.code == 4 and "`email` column" in result.err


def test_a_file_without_names_keeps_the_names_readers_gave(verdicts, session, tmp_path):
    (tmp_path / "r.csv").write_text(GOOD, encoding="utf-8")
    verdicts("subscribers", "import", "r.csv")
    (tmp_path / "bare.csv").write_text("email\nada@example.com\nnew@example.com\n", encoding="utf-8")
    assert "1 added, 1 updated" in verdicts("subscribers", "import", "bare.csv", "--confirmed").out  # Ada: confirmed
    (tmp_path / "blank.csv").write_text("email,name\ngrace@example.org,\nnew@example.com,  \n", encoding="utf-8")
    assert "2 unchanged" in verdicts("subscribers", "import", "blank.csv").out
    (tmp_path / "renamed.csv").write_text("email,name\nnew@example.com,Newt\n", encoding="utf-8")
    assert "1 updated" in verdicts("subscribers", "import", "renamed.csv").out
    session.expire_all()
    assert {s.email: (s.name, s.status) for s in readers(session)} == {
        "ada@example.com": ("Ada Lovelace", SubscriberStatus.confirmed),  # confirmed by the bare file, name kept
        "grace@example.org": ("Grace", SubscriberStatus.pending),
        "new@example.com": ("Newt", SubscriberStatus.confirmed),
    }


def test_reimport_never_brings_back_someone_who_left(verdicts, session, settings, tmp_path):
    (tmp_path / "r.csv").write_text(GOOD, encoding="utf-8")
    verdicts("subscribers", "import", "r.csv", "--confirmed")
    assert verdicts("subscribers", "remove", "ada@example.com").code == 0
    result = verdicts("subscribers", "import", "r.csv", "--confirmed")
    assert "1 suppressed" in result.out and "on the suppression list" in result.err
    issue = seed_issue(session, tmp_path, readers=0)
    summary = send_issue(settings, issue.id, OutboxProvider(settings))
    assert summary.sent == 1  # Grace only


def test_a_large_import_gives_every_row_what_adding_it_alone_would(verdicts, session, settings, tmp_path):
    """2,500 rows (three rounds of the bulk path) mixing new readers with every kind of known one:
    each gets add_subscriber's outcome, and each new reader its row and consent records."""
    known = (
        "email,name\nwaiting@example.com,Wai\nsteady@example.com,Ste\nleft@example.com,Lef\nerased@example.com,Era\n"
    )
    (tmp_path / "known.csv").write_text(known, encoding="utf-8")
    verdicts("subscribers", "import", "known.csv")
    verdicts("subscribers", "add", "steady@example.com", "--confirmed")
    for address in ("left@example.com", "erased@example.com"):
        verdicts("subscribers", "remove", address)
    erase(session, get_by_email(session, "erased@example.com"), Evidence(source="cli"))
    session.commit()
    new = [f"new{i}@example.com" for i in range(2496)]
    rows = [
        *(f"{a},N {a[3:-12]}" for a in new[:1200]),
        "waiting@example.com,Wai",
        "steady@example.com,Ste",
        "left@example.com,Lef",
        "erased@example.com,Era",
        *(f"{a},N {a[3:-12]}" for a in new[1200:]),
    ]
    (tmp_path / "big.csv").write_text("email,name\n" + "\n".join(rows) + "\n", encoding="utf-8")

    result = verdicts("subscribers", "import", "big.csv", "--confirmed")

    assert result.code == 0 and "2,496 added, 2 suppressed, 1 unchanged, 1 updated" in result.out
    by_email = {s.email: s for s in readers(session)}
    assert all(
        by_email[a].status is SubscriberStatus.confirmed
        and by_email[a].confirmed_at
        and by_email[a].source == "csv"
        and by_email[a].name == f"N {a[3:-12]}"
        for a in new
    )
    assert by_email["waiting@example.com"].status is SubscriberStatus.confirmed
    assert by_email["left@example.com"].status is SubscriberStatus.unsubscribed and "erased@example.com" not in by_email
    records = session.exec(select(ConsentRecord).where(col(ConsentRecord.email).like("new%"))).all()
    by_reader: dict[str, list] = {}
    for r in sorted(records, key=lambda r: r.id):
        assert (r.subscriber_id, r.email_hash, r.source) == (by_email[r.email].id, email_hash(r.email), "csv")
        by_reader.setdefault(r.email, []).append(r.event)
    assert by_reader == {a: [ConsentEvent.signup, ConsentEvent.confirm] for a in new}


def test_export_to_a_folder_that_does_not_exist_is_a_clear_error(verdicts, settings, tmp_path):
    assert verdicts("subscribers", "add", "ada@example.com").code == 0
    result = verdicts("subscribers", "export", "no-such-folder/readers.csv")
    assert result.code == 4 and "no-such-folder/readers.csv: cannot write the file" in result.err
    assert "Traceback" not in result.err and not (tmp_path / "no-such-folder").exists()


def test_many_bad_rows_are_summed_up_on_the_terminal_and_listed_whole_in_the_report(verdicts, settings, tmp_path):
    bad = [f"nope{i}@" for i in range(25)]
    (tmp_path / "r.csv").write_text(GOOD + "\n".join(f"{b},X" for b in bad) + "\n", encoding="utf-8")
    before = db_snapshot(settings.database_url)
    refused = verdicts("subscribers", "import", "r.csv", "--report", "bad.csv")
    assert (
        refused.code == 1
        and "25 bad row(s), nothing imported" in refused.err
        and "every one is in bad.csv" in refused.err
    )
    assert db_snapshot(settings.database_url) == before
    listed = list(csv.DictReader((tmp_path / "bad.csv").open()))
    assert [(r["line"], r["email"], r["outcome"]) for r in listed] == [
        (str(4 + i), b, "invalid") for i, b in enumerate(bad)
    ]
    assert "--report FILE lists every one" in verdicts("subscribers", "import", "r.csv").err

    skipped = verdicts("subscribers", "import", "r.csv", "--skip-invalid")
    assert skipped.code == 0 and "2 added, 25 invalid" in skipped.out
    lines = skipped.err.splitlines()
    assert lines[0].startswith("line 4: nope0@: invalid") and sum(line.startswith("line ") for line in lines) == 20
    assert "… and 5 more such rows: --report FILE lists every one" in skipped.err
    reported = verdicts("subscribers", "import", "r.csv", "--skip-invalid", "--report", "bad.csv")
    assert "25 row(s) refused or suppressed, each one in bad.csv" in reported.err
    assert len(list(csv.DictReader((tmp_path / "bad.csv").open()))) == 25


def test_a_list_moved_to_another_database_keeps_who_left_and_who_never_confirmed(verdicts, session, tmp_path):
    """`export` writes each reader's status; importing that file elsewhere must honour it, even with --confirmed."""
    verdicts("subscribers", "add", "stays@example.com", "--confirmed")  # known here; the other list says they left
    header = ",".join(csvio.EXPORT_COLUMNS)
    (tmp_path / "moved.csv").write_text(
        f"{header}\nada@example.com,Ada,confirmed,form,,,\nbob@example.com,Bob,pending,form,,,\n"
        "cy@example.com,Cy,unsubscribed,form,,,\nstays@example.com,,unsubscribed,cli,,,\nnew@example.com,New,,csv,,,\n",
        encoding="utf-8",
    )
    result = verdicts("subscribers", "import", "moved.csv", "--confirmed")
    assert result.code == 0 and "3 added, 2 suppressed" in result.out
    assert "line 4: cy@example.com: suppressed: unsubscribed in the file" in result.err
    session.expire_all()
    assert {s.email: s.status for s in readers(session)} == {
        "ada@example.com": SubscriberStatus.confirmed,
        "bob@example.com": SubscriberStatus.pending,
        "stays@example.com": SubscriberStatus.unsubscribed,
        "new@example.com": SubscriberStatus.confirmed,
    }
    assert "on the suppression list (they unsubscribed" in verdicts("subscribers", "add", "cy@example.com").err
    again = verdicts("subscribers", "import", "moved.csv", "--confirmed")
    assert again.code == 0 and "2 suppressed, 3 unchanged" in again.out and "bob" not in again.err
    (tmp_path / "odd.csv").write_text("email,status\nz@example.com,gone\n", encoding="utf-8")
    odd = verdicts("subscribers", "import", "odd.csv")
    assert odd.code == 1 and "status 'gone' is not one of confirmed, pending, unsubscribed" in odd.err


def test_rows_a_broken_quote_or_a_bare_comma_would_garble_are_refused_by_line(verdicts, settings, tmp_path):
    before = db_snapshot(settings.database_url)
    (tmp_path / "quote.csv").write_text(
        'email,name\nalice@example.com,"Alice\nbob@example.com,Bob\ncarol@example.com,Carol\n', encoding="utf-8"
    )
    swallowed = verdicts("subscribers", "import", "quote.csv", "--confirmed")
    assert swallowed.code == 1 and 'first at line 2: a quote (") opened on this line runs on to line 4' in swallowed.err
    (tmp_path / "comma.csv").write_text(
        'email,name\ncomma@example.com,Smith, John\nok@example.com,"Smith, Jo"\n', encoding="utf-8"
    )
    split = verdicts("subscribers", "import", "comma.csv")
    assert (
        split.code == 1
        and "line 2: 3 fields, the header has 2: a name that holds a comma must be in quotes" in split.err
    )
    assert "1 bad row(s)" in split.err  # the quoted comma is fine
    assert db_snapshot(settings.database_url) == before


def test_a_file_that_is_not_a_comma_separated_utf8_list_says_what_was_found_and_the_fix(verdicts, settings, tmp_path):
    cases = {
        "semi.csv": (b"email;name\nada@example.com;Ada\n", "it has 'email;name': the columns look separated by ';'"),
        "mailchimp.csv": (
            b'"Email Address","First Name"\nada@example.com,Ada\n',
            "it has 'Email Address', 'First Name': name the column",
        ),
        "empty.csv": (b"", "the file is empty"),
        "latin1.csv": (
            "email,name\nada@example.com,Ada\nzoe@example.com,Zoé\n".encode("latin-1"),
            "line 3 is not UTF-8 text: save the file as UTF-8",
        ),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        result = verdicts("subscribers", "import", name)
        assert result.code == 4 and expected in result.err, (name, result.err)


def test_names_a_spreadsheet_would_run_as_formulas_are_exported_inert_and_imported_back_as_they_were(
    verdicts, session, tmp_path
):
    formula = '=HYPERLINK("http://evil.example","Click")'
    names = {"eve@example.com": formula, "dash@example.com": "'-dash", "plain@example.com": "'quoted"}
    for address, name in names.items():
        assert verdicts("subscribers", "add", address, "--name", name).code == 0
    assert verdicts("subscribers", "export", "out.csv").code == 0
    exported = {r["email"]: r["name"] for r in csv.DictReader((tmp_path / "out.csv").open())}
    assert exported == {"eve@example.com": "'" + formula, "dash@example.com": "''-dash", "plain@example.com": "'quoted"}
    assert "3 unchanged" in verdicts("subscribers", "import", "out.csv").out
    session.expire_all()
    assert {s.email: s.name for s in readers(session)} == names
    # The report of a refused row carries the file's own text: inert there too.
    (tmp_path / "bad.csv").write_text('email,name\n"=HYPERLINK(""http://evil.example"")",x\n', encoding="utf-8")
    verdicts("subscribers", "import", "bad.csv", "--skip-invalid", "--report", "report.csv")
    reported = next(csv.DictReader((tmp_path / "report.csv").open()))
    assert reported["email"].startswith("'=") and not reported["reason"].startswith(FORMULA_STARTS)


def test_a_header_only_file_and_an_export_to_dash_do_what_they_say(verdicts, settings, tmp_path):
    (tmp_path / "header.csv").write_text("email,name\n", encoding="utf-8")
    assert verdicts("subscribers", "import", "header.csv").out == "Imported: nothing, the file has no rows.\n"
    verdicts("subscribers", "add", "ada@example.com")
    exported = verdicts("subscribers", "export", "-")
    assert (
        exported.code == 0
        and exported.out.splitlines()[1].startswith("ada@example.com,")
        and not (tmp_path / "-").exists()
    )


def test_blank_lines_line_endings_and_unclosed_quotes_are_named_by_their_own_line(verdicts, settings, tmp_path):
    (tmp_path / "blank.csv").write_bytes(b"email,name\r\na@example.com,A\r\n\r\n\r\nb@example.com,B\r\n")
    assert (
        "2 added" in verdicts("subscribers", "import", "blank.csv").out
    )  # csv skips blank lines; so must the line count
    (tmp_path / "cr.csv").write_bytes(
        b"email,name\rc@example.com,C\rd@example.com,Bj\xf6rn\r"
    )  # Excel for Mac: CR alone
    assert "line 3 is not UTF-8 text" in verdicts("subscribers", "import", "cr.csv").err
    (tmp_path / "last.csv").write_text('email,name\ne@example.com,E\n\nf@example.com,"Frank\n', encoding="utf-8")
    last = verdicts("subscribers", "import", "last.csv")
    assert last.code == 1 and 'first at line 4: a quote (") opened on this line is never closed' in last.err
    rows = [
        "email,name",
        'x1@example.com,"Broken',
        *(f"r{i}@example.com,R" for i in range(8000)),
    ]  # past csv's 128 KB cell limit
    (tmp_path / "big.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    big = verdicts("subscribers", "import", "big.csv", "--skip-invalid")
    assert (
        big.code == 0
        and 'line 2: x1@example.com: invalid: a quote (") opened on this line runs on to line 8002' in big.err
    )
