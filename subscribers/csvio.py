"""CSV import and export of readers, with a report for every row."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from sqlmodel import Session

from pipeline.errors import InvalidInput
from pipeline.files import MB, opened_limited
from subscribers.addresses import clean_name, normalise_email
from subscribers.bulk import add_subscribers, leave_by_import
from subscribers.lookup import readers
from subscribers.models import SubscriberStatus


@dataclass(frozen=True)
class RowReport:
    line: int
    email: str
    outcome: str  # added / updated / unchanged / suppressed / invalid / duplicate
    reason: str = ""


@dataclass
class ImportReport:
    """How many rows had each outcome, and the rows with something to say (refused, suppressed):
    one kept for every row added 50 MB to the peak of a million-reader import, to say "added"."""

    rows: list[RowReport] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)

    def add(self, row: RowReport) -> None:
        self.tally[row.outcome] += 1
        if row.reason:
            self.rows.append(row)

    @property
    def refused(self) -> int:
        return self.tally["invalid"] + self.tally["duplicate"]

    @property
    def bad(self) -> list[RowReport]:
        return [r for r in self.rows if r.outcome in ("invalid", "duplicate")]


class GoodRow(NamedTuple):
    line: int
    email: str
    name: str | None
    status: str | None  # one of STATUSES, or None where the file says nothing


#: What `subscribers export` writes in its ``status`` column; an import keeps it (a list moved to a
#: new database must not bring back the readers who left, nor confirm those who never did).
STATUSES = tuple(sorted(s.value for s in SubscriberStatus))
#: A cell starting with one of these is a formula to a spreadsheet (the export goes straight into
#: one): the export puts a ``'`` before it, as OWASP advises, and the import takes it off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _read_rows(path: Path, max_mb: float | None) -> Iterator[tuple[int, int, dict[str | None, Any]]]:
    """Each row with its first and last line, decoded as the file is read: the file's bytes held
    whole added 47 MB to the peak of a million-row import (306 → 259 MB), and rows held as dicts
    240 MB before that."""
    with opened_limited(path, max_mb, "CSV_IMPORT_MAX_MB") as data:
        if max_mb is not None:
            # An unclosed quote reads the rest of the file into one cell: let it, so the row can be named.
            csv.field_size_limit(max(csv.field_size_limit(), int(max_mb * MB)))
        lines = _Lines(io.TextIOWrapper(data, encoding="utf-8-sig", newline=""))
        reader = csv.DictReader(lines)
        try:
            reader.fieldnames = _columns(path, reader.fieldnames)
            lines.next_row()
            for row in reader:
                yield lines.first, lines.number, row
                lines.next_row()
        except csv.Error as exc:
            raise InvalidInput(f"{path}: not a readable CSV file (line {lines.number}: {exc})") from None
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{path}: line {_first_undecodable(data)} is not UTF-8 text: save the file as UTF-8 "
                '("CSV UTF-8" in Excel) and import it again'
            ) from None
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from None


class _Lines:
    """The file's lines as ``csv`` pulls them, numbered: where a row starts (blank lines before it,
    which ``csv`` skips, do not count) and where it ends."""

    def __init__(self, text: Iterator[str]) -> None:
        self.text, self.number, self.first, self.waiting = text, 0, 0, True

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.text)
        self.number += 1
        if self.waiting and line.strip("\r\n"):
            self.first, self.waiting = self.number, False
        return line

    def next_row(self) -> None:
        self.waiting = True


_BREAK = re.compile(rb"\r\n|\r|\n")


def _first_undecodable(data: IO[bytes]) -> int:
    """The line to name: the text is decoded ahead of the rows, a block at a time. Lines end in
    CR alone too (Excel for Mac)."""
    data.seek(0)
    for number, line in enumerate(_BREAK.split(data.read()), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 1


def _columns(path: Path, header: Sequence[str] | None) -> list[str]:
    if not header:
        raise InvalidInput(
            f"{path}: the file is empty: its first line must be a header with an `email` column (and optionally `name`)"
        )
    columns = [c.strip().lower() for c in header]
    if "email" in columns:
        return columns
    found = ", ".join(repr(c) for c in header[:6])
    hint = next(
        (
            f": the columns look separated by {name}; save the file with commas"
            for sep, name in ((";", "';'"), ("\t", "tabs"))
            if any(sep in c for c in header)
        ),
        ": name the column that holds the addresses `email`",
    )
    raise InvalidInput(
        f"{path}: the first line must be a header with an `email` column (and optionally `name`); it has {found}{hint}"
    )


def _cell(value: str | None) -> str:
    value = (value or "").strip()
    return value[1:] if value[:1] == "'" and _runs_as_formula(value[1:]) else value


def _runs_as_formula(value: str) -> bool:
    """Whether a spreadsheet would run it, or it starts with the marks that stop one (a name that
    begins with ``'`` keeps it through an export and an import)."""
    return value.lstrip("'").startswith(FORMULA_STARTS)


def _problem(first: int, last: int, row: dict[str | None, Any], width: int) -> str | None:
    """What makes a row unreadable as one reader, before its values are looked at."""
    if any(isinstance(v, str) and ("\n" in v or "\r" in v) for v in row.values()):
        # A quote that is never closed reads the lines after it into one cell: those readers vanish.
        if last == first:
            return 'a quote (") opened on this line is never closed: close it, or remove it'
        return (
            f'a quote (") opened on this line runs on to line {last}, so lines {first}-{last} were read as one '
            "row: close the quote, or remove it"
        )
    if None in row:
        return (
            f"{width + len(row[None])} fields, the header has {width}: a name that holds a comma must be in quotes "
            '("Smith, John")'
        )
    status = _cell(row.get("status")).lower()
    if status and status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)} (the values `subscribers export` writes)"
    return None


def checked_rows(path: Path, report: ImportReport, max_mb: float | None = None) -> Iterator[GoodRow]:
    """Each good row, as it is read; a refused row goes into ``report`` instead. A file over
    ``max_mb`` (VERDICTS_CSV_IMPORT_MAX_MB) is refused before it is read.

    A row without a name (no ``name`` column, or an empty cell) gives None: a known reader keeps
    the name we have. A list exported from another tool often has no names; re-importing it
    must not blank the ones readers gave us. Likewise a row without a status is None."""
    seen: dict[str, int] = {}
    width = 0
    for line, last, row in _read_rows(path, max_mb):
        width = width or len([k for k in row if k is not None])
        raw_email = _cell(row.get("email"))
        try:
            problem = _problem(line, last, row, width)
            if problem:
                raise InvalidInput(problem)
            email = normalise_email(raw_email)
            name = clean_name(_cell(row.get("name"))) or None
        except InvalidInput as exc:
            report.add(RowReport(line, raw_email, "invalid", str(exc)))
            continue
        if email in seen:
            report.add(RowReport(line, email, "duplicate", f"same address as line {seen[email]}"))
            continue
        seen[email] = line
        yield GoodRow(line, email, name, _cell(row.get("status")).lower() or None)


class BadRows(InvalidInput):
    """A file with rows that cannot be imported: nothing was written. ``report`` names every one."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


#: Good rows written at a time: the list is never held whole. Held whole, a million rows peaked at
#: 455 MB; written in rounds, 306 MB. What stays is one entry per address, to name duplicates.
ROUND = 5_000


def import_csv(
    session: Session, path: Path, *, confirmed: bool, skip_invalid: bool, max_mb: float | None = None
) -> ImportReport:
    """All-or-nothing unless ``skip_invalid``: one bad row and nothing is written.

    ``confirmed`` confirms the readers whose row has no status, or ``confirmed``; a ``pending``
    row stays pending, and an ``unsubscribed`` one goes on the suppression list, never on the list.

    Rows are written a round at a time as they are read, inside the caller's one transaction
    (``session_scope``). After a bad row nothing more is written, the rest of the file is still
    checked so that the error lists every bad row, and the caller's rollback undoes the rounds
    written before it."""
    report = ImportReport()
    good: list[GoodRow] = []
    for row in checked_rows(path, report, max_mb):
        if report.refused and not skip_invalid:
            continue
        good.append(row)
        if len(good) == ROUND:
            _write(session, good, report, confirmed)
            good = []
    if report.refused and not skip_invalid:
        first = report.bad[0]
        raise BadRows(
            f"{path}: {report.refused:,} bad row(s), nothing imported; first at line {first.line}: "
            f"{first.reason} (fix the rows or pass --skip-invalid)",
            report,
        )
    _write(session, good, report, confirmed)
    report.rows.sort(key=lambda r: r.line)
    return report


def _write(session: Session, good: list[GoodRow], report: ImportReport, confirmed: bool) -> None:
    left = [r for r in good if r.status == "unsubscribed"]
    leave_by_import(session, [r.email for r in left])
    for row in left:
        report.add(
            RowReport(
                row.line, row.email, "suppressed", "unsubscribed in the file: on the suppression list, sent nothing"
            )
        )
    for as_confirmed in (True, False):
        part = [r for r in good if r.status != "unsubscribed" and (confirmed and r.status != "pending") is as_confirmed]
        outcomes = add_subscribers(session, [(r.email, r.name) for r in part], confirmed=as_confirmed, source="csv")
        for row, outcome in zip(part, outcomes, strict=True):
            reason = (
                "on the suppression list (they left, bounced, complained or were erased); only they can opt in again"
                if outcome == "suppressed"
                else ""
            )
            report.add(RowReport(row.line, row.email, outcome, reason))


def write_report(report: ImportReport, out: IO[str]) -> None:
    """Every row with something to say, as CSV: the list to fix a file by."""
    writer = csv.writer(out)
    writer.writerow(["line", "email", "outcome", "reason"])
    # The addresses and reasons are the file's own text: a refused "=HYPERLINK(…)" must stay inert here too.
    writer.writerows((r.line, spreadsheet_safe(r.email), r.outcome, spreadsheet_safe(r.reason)) for r in report.rows)


EXPORT_COLUMNS = ["email", "name", "status", "source", "created_at", "confirmed_at", "unsubscribed_at"]


def export_csv(session: Session, out: IO[str]) -> int:
    """Every reader, streamed: memory stays flat whatever the list's size."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for r in readers(session):
        writer.writerow(
            [
                spreadsheet_safe(r.email),
                spreadsheet_safe(r.name),
                r.status.value,
                spreadsheet_safe(r.source),
                *(t.isoformat() if t else "" for t in (r.created_at, r.confirmed_at, r.unsubscribed_at)),
            ]
        )
        count += 1
    return count


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading ``'`` before what it would run as a formula."""
    return "'" + value if _runs_as_formula(value) else value
