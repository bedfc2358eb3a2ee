"""RELIABILITY.md is written by `make reliability` alone: each fault test rewrites only its own section, one per
database. The same tests under `make test` write nothing, so running the suite leaves the tree clean."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.report import write_section

#: The file `make reliability` names; unset (as under `make test`), the figures are checked and not written.
REPORT_ENV = "RELIABILITY_REPORT_FILE"  # not VERDICTS_: the tests clear those
TITLE = (
    "# Reliability\n\nWritten by `make reliability` (`tests/test_reliability.py`, "
    "`tests/test_database_faults.py`); "
    "the last run wins. `make test` runs the same trials and leaves this file alone."
)


def write_reliability(name: str, text: str) -> Path | None:
    """The section, into the file `make reliability` names; None (nothing written) otherwise."""
    target = os.environ.get(REPORT_ENV)
    if not target:
        return None
    write_section(Path(target), name, text, title=TITLE, marker="suite")
    return Path(target)
