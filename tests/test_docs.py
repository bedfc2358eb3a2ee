"""The README and docs/ link to each other: every relative link must reach a file, and its #anchor a heading."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.report import BENCHMARKS_FILE

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def anchors(markdown: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` that reaches no file, or no heading of the page it names."""
    text = CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 5
    broken = {page.name: found for page in pages if (found := broken_links(page))}
    assert not broken


def test_a_missing_file_or_heading_is_caught(tmp_path):
    (tmp_path / "other.md").write_text("# Title\n\n## The ledger: each delivery's states\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#the-ledger-each-deliverys-states) [ok](#here) [web](https://example.org/x)\n"
        "`[in code](nowhere.md)`\n```\n[in a block](nowhere.md)\n```\n"
        "[gone](missing.md) [no heading](other.md#nope) [no local](#there)\n\n# Here\n",
        encoding="utf-8",
    )
    assert [line.partition(":")[0] for line in broken_links(page)] == ["missing.md", "other.md#nope", "#there"]


def test_make_bench_and_make_reliability_write_the_reports_the_docs_link_to():
    """A report moved without its writer would leave the linked page stale and a new one where nobody looks."""
    assert (ROOT / BENCHMARKS_FILE).is_file()
    written = set(re.findall(r"RELIABILITY_REPORT_FILE=\$\(CURDIR\)/(\S+)", (ROOT / "Makefile").read_text()))
    assert written == {"docs/RELIABILITY.md"}
    assert (ROOT / "docs" / "RELIABILITY.md").is_file()
