"""docs/BENCHMARKS.md (and the suite's docs/RELIABILITY.md) are written by several runs: each one rewrites
only its own section."""

from __future__ import annotations

import re
from pathlib import Path

#: Where `make bench` (run from the repository's top) writes: each benchmark's default --out.
BENCHMARKS_FILE = Path("docs/BENCHMARKS.md")


def write_section(path: Path, name: str, text: str, title: str = "# Benchmarks", marker: str = "bench") -> None:
    start, end = f"<!-- {marker}:{name} -->", f"<!-- /{marker}:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    current = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    updated = (
        pattern.sub(lambda _m: block, current) if pattern.search(current) else current.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(updated, encoding="utf-8")
