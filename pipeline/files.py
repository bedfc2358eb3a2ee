"""Files people hand us (comparison imports, subscriber CSVs) are refused by size before they are read:
a mistaken or hostile multi-gigabyte file must not fill the memory of the command importing it.
Files we write for them (exports, previews) appear whole or not at all."""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pipeline.errors import InvalidInput

MB = 1024 * 1024


def _too_large(path: Path, size: str, max_mb: float, setting: str) -> InvalidInput:
    return InvalidInput(
        f"{path}: the file is {size}, over the {max_mb:g} MB limit: split it into smaller files, "
        f"or raise VERDICTS_{setting} if it really is that large"
    )


def read_limited(path: Path, max_mb: float | None, setting: str) -> bytes:
    """The file's bytes, or a clear error naming the file, its size, the limit and the fix
    (``max_mb=None`` is for files that ship with the project, samples, which are trusted)."""
    with opened_limited(path, max_mb, setting) as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from None


@contextmanager
def opened_limited(path: Path, max_mb: float | None, setting: str) -> Iterator[IO[bytes]]:
    """The file to read as a stream, for formats read row by row: a list of a million readers is
    never held whole. A regular file over the limit is refused by the size stat reports, before a
    byte is read; a pipe or device, whose size stat cannot tell, is read (no further than one byte
    past the limit) before it is handed over."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from None
    with handle:
        if max_mb is None:
            yield handle
            return
        limit = int(max_mb * MB)
        info = os.fstat(handle.fileno())
        if stat.S_ISREG(info.st_mode):
            if info.st_size > limit:
                raise _too_large(path, f"{info.st_size / MB:.1f} MB ({info.st_size:,} bytes)", max_mb, setting)
            yield handle
            return
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from None
        if len(data) > limit:
            raise _too_large(path, f"more than {max_mb:g} MB", max_mb, setting)
        yield io.BytesIO(data)


@contextmanager
def written(path: Path, *, newline: str | None = None, binary: bool = False) -> Iterator[IO[Any]]:
    """A file (text, or ``binary``) that replaces ``path`` only once all of it is written: a failure halfway (a full
    disk, a database error a million readers in) leaves no half file, and an earlier file as it was.
    A path that cannot be written is a clear error naming it, not a traceback. The file is its
    owner's alone to read (``mkstemp``'s mode): an export holds readers' addresses."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InvalidInput(
            f"{path}: cannot write the file ({exc.strerror}): choose a folder that exists and that you can write to"
        ) from None
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInput(f"{path}: cannot write the file ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
