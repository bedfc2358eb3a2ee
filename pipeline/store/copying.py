"""Moving a site to another database: a list that outgrew SQLite goes to PostgreSQL with
everything it holds (readers, their consent trail, suppressions, issues, the ledger, votes).

Every row of every table is copied with its id, in one transaction on the target, from one
consistent snapshot of the source, a round of rows at a time: memory stays flat whatever the
list's size, and a failure leaves the target with its tables and no rows. The source is only read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import pipeline.store.models
import subscribers.models
from pipeline.errors import InvalidInput, InvalidState, VerdictsError
from pipeline.store.db import get_engine, open_transaction, require_known, require_schema, shown_url, transient, upgrade

#: Rows read and written at a time.
ROUND = 5_000
#: The modules whose classes are the tables: imported, they fill the metadata the copy walks.
MODELS = (pipeline.store.models, subscribers.models)


class TargetNotEmpty(InvalidState):
    """The target already holds a site: copying into it would mix two sites' ids."""


class CopyRefused(InvalidInput):
    """A row the target database does not accept (SQLite let it in); nothing was copied."""


class CopyInterrupted(VerdictsError):
    """The target went away (restarted, the network dropped); nothing was copied."""


#: Where the target's URL came from, for errors about it.
TARGET = "the target URL"


def copy_database(
    source_url: str, target_url: str, on_progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Every table's rows from ``source_url`` into ``target_url`` (created, or at the same schema and
    empty); returns the rows copied per table."""
    if shown_url(source_url) == shown_url(target_url):
        raise InvalidInput(f"the target is the database being copied ({shown_url(target_url)}): name another one")
    require_schema(source_url)
    source, target = get_engine(source_url), get_engine(target_url)
    tables = SQLModel.metadata.sorted_tables  # parents before the rows that refer to them
    require_known(target, TARGET)  # reachable, and not a schema from a newer version
    _refuse_if_holding_rows(target, tables, target_url)  # before `upgrade` migrates anything there
    upgrade(target_url, TARGET)
    with source.connect() as src, target.begin() as dst:
        _snapshot(src)
        open_transaction(dst)  # the savepoints that find a refused row must not commit what came before
        total = sum(src.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables)
        copied: dict[str, int] = {}
        done = 0
        for table in tables:
            rows = src.execution_options(stream_results=True, yield_per=ROUND).execute(
                sa.select(table).order_by(*table.primary_key.columns)
            )
            copied[table.name] = 0
            for part in rows.partitions():
                _insert(dst, table, part)
                copied[table.name] += len(part)
                done += len(part)
                if on_progress:
                    on_progress(done, total)
        ids = [column for column in map(_id_column, tables) if column is not None]
        _continue_ids(dst, {column: _high_water(src, column) for column in ids})
    return copied


def written_since(source_url: str, copied: dict[str, int]) -> int:
    """Rows the source has now beyond those copied: the web app or the scheduler wrote them during the copy."""
    with get_engine(source_url).connect() as conn:
        return sum(
            max(0, conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() - copied.get(t.name, 0))
            for t in SQLModel.metadata.sorted_tables
        )


def _insert(dst: sa.Connection, table: sa.Table, part: Sequence[sa.Row[Any]]) -> None:
    values = [dict(row._mapping) for row in part]
    try:
        with dst.begin_nested():
            dst.execute(table.insert(), values)
    except sa.exc.DBAPIError as exc:
        if transient(exc):
            raise CopyInterrupted(
                f"the connection to the target was lost ({_first_line(exc)}): nothing was copied; "
                "the target has its tables and no rows: run the copy again"
            ) from None
        raise _refused(dst, table, values) from None


def _refused(dst: sa.Connection, table: sa.Table, values: list[dict[str, Any]]) -> CopyRefused:
    """The first row of a round the target refuses, found one row at a time, named by its id and
    what is wrong with it: never by its values (readers' addresses, names)."""
    key = table.primary_key.columns.values()[0].name
    for row in values:
        try:
            with dst.begin_nested():
                dst.execute(table.insert(), [row])
        except sa.exc.DBAPIError as exc:
            # SQLite does not enforce column sizes; PostgreSQL does, and does not say which column.
            long = [
                f"{c.name} is {len(row[c.name])} characters, the column holds {length}"
                for c in table.columns
                if isinstance(row[c.name], str)
                and (length := getattr(c.type, "length", None))
                and len(row[c.name]) > length
            ]
            return CopyRefused(
                f"the target refused {table.name} {key} {row[key]} ({'; '.join(long) or _first_line(exc)}): "
                "correct that row in the source database, then copy again; the target has its tables and no rows"
            )
    return CopyRefused(f"the target refused a round of {table.name} that it takes row by row: copy again")


def _first_line(exc: sa.exc.DBAPIError) -> str:
    # The database's own words, first line only: the rest, and SQLAlchemy's message, quote the rows.
    return (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]


def _refuse_if_holding_rows(target: sa.Engine, tables: list[sa.Table], url: str) -> None:
    with target.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        held = [
            t.name
            for t in tables
            if t.name in existing and conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first()
        ]
    if held:
        raise TargetNotEmpty(
            f"{shown_url(url)} already holds rows ({', '.join(held)}): copy into a new, empty database"
        )


def _snapshot(src: sa.Connection) -> None:
    """Read every table as of one moment: a sign-up or a vote during the copy must not leave a
    row pointing at one that was not copied."""
    if src.dialect.name == "sqlite":
        open_transaction(src)
    else:
        src.execution_options(isolation_level="REPEATABLE READ")


def _id_column(table: sa.Table) -> sa.Column[Any] | None:
    """The integer id the database hands out, if the table has one."""
    key = list(table.primary_key.columns)
    return key[0] if len(key) == 1 and isinstance(key[0].type, sa.Integer) else None


def _high_water(src: sa.Connection, column: sa.Column[Any]) -> int:
    """The highest id the source ever handed out: past the highest row left once the newest row was deleted (an
    erased reader, whose old signed links carry that id). SQLite's AUTOINCREMENT counter or PostgreSQL's sequence."""
    table = column.table
    highest = src.execute(sa.select(sa.func.max(column))).scalar_one() or 0
    if src.dialect.name == "postgresql":
        sequence = "pg_get_serial_sequence(:table, :column)::regclass"
        counter = src.execute(
            sa.text(f"SELECT pg_sequence_last_value({sequence})"),
            {"table": _quoted(src, table.name), "column": column.name},
        ).scalar_one()
    elif src.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
        counter = src.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = :table"), {"table": table.name}
        ).scalar()
    else:
        counter = None
    return max(highest, counter or 0)


def _continue_ids(dst: sa.Connection, marks: dict[sa.Column[Any], int]) -> None:
    """The next row of each table gets an id after the source's high-water mark, never one it handed out
    before: not 1 (a PostgreSQL sequence the copy never used), nor an erased reader's id (which the target's
    counter, left at the highest row copied, would hand to the next sign-up)."""
    for column, mark in marks.items():
        table = column.table
        if dst.dialect.name == "postgresql":
            dst.execute(
                sa.text("SELECT setval(pg_get_serial_sequence(:table, :column), :mark, :called)"),
                {
                    "table": _quoted(dst, table.name),
                    "column": column.name,
                    "mark": max(mark, 1),
                    "called": mark > 0,
                },
            )
        elif table.dialect_options["sqlite"]["autoincrement"]:
            # Tables without AUTOINCREMENT go on from their highest row whatever is written here (SQLite's rowid).
            dst.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :table"), {"table": table.name})
            dst.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:table, :mark)"),
                {"table": table.name, "mark": mark},
            )


def _quoted(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
