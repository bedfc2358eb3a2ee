"""RELIABILITY.md is written by the suite: each fault test rewrites only its own section, one per database."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import write_section

REPORT = Path(__file__).resolve().parents[1] / "RELIABILITY.md"
TITLE = "# Reliability\n\nWritten by the test suite on every run (`tests/test_reliability.py`, `tests/test_database_faults.py`); the last run wins."


def write_reliability(name: str, text: str) -> None:
    write_section(REPORT, name, text, title=TITLE, marker="suite")
