"""`verdicts database backup`: a copy of a SQLite site taken while the web app and the scheduler keep
writing to it. SQLite's online backup API reads one consistent moment (a reader with their whole
consent trail, a send's ledger as it stood), which copying the file could tear halfway through a
write; in WAL mode the writers are not held up meanwhile. The copy becomes FILE only once it is
complete and passes ``PRAGMA integrity_check``: a failed backup never replaces a good one.

PostgreSQL has its own tool for this, ``pg_dump``: the command says how to run it."""

from __future__ import annotations

import errno
import os
import shlex
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipeline.errors import ConfigurationError, InvalidInput, VerdictsError
from pipeline.store.db import DatabaseNotReady, shown_url

#: The files SQLite keeps beside a database: a backup written over one of them would wreck the site.
_COMPANIONS = ("", "-wal", "-shm", "-journal")


class BackupExists(InvalidInput):
    """FILE is there already: a backup never replaces a file unless told to (``--force``)."""


class BackupAsRoot(ConfigurationError):
    """Root's SQLite would leave -wal/-shm files the service's user cannot open: a set-up mistake, not bad data."""


class BackupCorrupt(VerdictsError):
    """The copy failed SQLite's integrity check, so the database itself is damaged: nothing was written."""


class UsePgDump(VerdictsError):
    """A PostgreSQL database is backed up with ``pg_dump``; nothing was written."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    revision: str
    seconds: float


def backup_database(url: str, target: Path, *, force: bool = False) -> Backup:
    """Copy the SQLite database at ``url`` to ``target`` while the site runs; see the module's docstring."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise UsePgDump(pg_dump_advice(url, target))
    source = Path(parsed.database or "").resolve()  # relative to the working folder, as the engine opens it
    _check_source(source)
    _check_target(source, target, force)
    started = time.monotonic()
    try:
        # Mode 0600: the copy holds readers' addresses.
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise InvalidInput(
            f"{target}: cannot write the backup there ({exc.strerror}): choose a folder that exists "
            "and that this user may write to"
        ) from None
    os.close(fd)
    partial = Path(name)
    try:
        revision = _copy(source, partial)
        _place(partial, target, force)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)
    return Backup(target, target.stat().st_size, revision, time.monotonic() - started)


def pg_dump_advice(url: str, target: Path) -> str:
    """What to run instead, with this site's database in it and its password left out."""
    parsed = sa.make_url(url)
    # Built afresh, not ``set(password=None)``, which keeps the password (None there means "unchanged").
    libpq = sa.URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).difference_update_query(["password"])
    dump = shlex.join(["pg_dump", "--format=custom", f"--file={target}", libpq.render_as_string(hide_password=False)])
    new = libpq.set(database="NEW_DATABASE").render_as_string(hide_password=False)
    restore = shlex.join(["pg_restore", "--no-owner", f"--dbname={new}", str(target)])
    return (
        f"{shown_url(url)} is a PostgreSQL database: back it up with pg_dump, which takes one consistent "
        f"snapshot while the site runs: {dump} (it asks for the password, or reads PGPASSWORD or ~/.pgpass). "
        f"To restore, into an empty database: {restore}, then point VERDICTS_DATABASE_URL at it and run "
        "`verdicts init`. Nothing was written"
    )


def _check_source(source: Path) -> None:
    if not source.is_file():
        raise DatabaseNotReady(f"there is no database at {source}: check VERDICTS_DATABASE_URL")
    owner = source.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        # As root, SQLite would make the -wal and -shm files root's: the site's user could no longer open its database.
        raise BackupAsRoot(
            f"{source} belongs to another user: run the backup as that user, not as root "
            f"(`runuser -u {_user(owner)} -- verdicts database backup …`, with the service's settings; "
            "docs/operating.md has an alias that runs commands as the services do)"
        )


def _check_target(source: Path, target: Path, force: bool) -> None:
    resolved = target.resolve()
    if resolved in {source.with_name(source.name + suffix) for suffix in _COMPANIONS}:
        raise InvalidInput(f"{target} is the database being backed up (or one of its files): name another file")
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder: name the file to write, e.g. {target / 'verdicts-backup.db'}")
    if target.exists() and not force:
        raise _exists(target)


def _exists(target: Path) -> BackupExists:
    return BackupExists(
        f"{target} exists: name a new file, or add --force to replace it (it is replaced only once the "
        "new copy is complete and checked)"
    )


def _copy(source: Path, partial: Path) -> str:
    """The whole database into ``partial``, checked; returns its schema revision."""
    try:
        src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, timeout=30)  # the site's database is only read
    except sqlite3.Error as exc:
        raise DatabaseNotReady(f"cannot open the database {source}: {exc}") from None
    try:
        dst = sqlite3.connect(partial)
        try:
            # One step (pages=-1), so one snapshot: a backup taken in several steps starts over each time the site
            # writes, and might never finish during a send. In WAL mode the site keeps writing meanwhile.
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, nothing beside it to lose
            problems = _problems(dst)
            revision = _revision(dst) if problems == ["ok"] else None
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise DatabaseNotReady(
            f"cannot back up the database {source}: {exc}; check that it is the site's database "
            "(VERDICTS_DATABASE_URL) and that this user may read it"
        ) from None
    finally:
        src.close()
    if problems != ["ok"]:
        raise BackupCorrupt(
            f"the copy of {source} fails SQLite's integrity check ({'; '.join(problems[:3])}): the "
            "database itself is damaged; nothing was written. Keep your last good backup, stop the "
            "services, and see https://sqlite.org/recovery.html"
        )
    if revision is None:
        raise DatabaseNotReady(f"{source} has no verdicts tables (`verdicts init` creates them): nothing to back up")
    return revision


def _problems(conn: sqlite3.Connection) -> list[str]:
    """What ``PRAGMA integrity_check`` finds (``["ok"]``: nothing); a page too damaged to list is one problem too."""
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def _revision(conn: sqlite3.Connection) -> str | None:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone():
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _place(partial: Path, target: Path, force: bool) -> None:
    """``partial`` becomes ``target`` in one step: a reader of ``target`` sees the old copy or the new one, whole."""
    try:
        if force:
            os.replace(partial, target)
            return
        try:
            os.link(partial, target)  # fails if a file appeared there meanwhile, where a rename would replace it
        except FileExistsError:
            raise _exists(target) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if target.exists():  # a file system without hard links: check, then rename
                raise _exists(target) from None
            os.replace(partial, target)
            return
        partial.unlink()
    except OSError as exc:
        raise InvalidInput(f"{target}: cannot write the backup ({exc.strerror})") from None


def _sync_folder(folder: Path) -> None:
    """The rename itself reaches the disk: a power cut just after the command would otherwise lose the new name."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
