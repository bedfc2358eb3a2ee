"""Render once per line-up: a send to readers spread over 1, 8 and 64 distinct line-ups, against rendering each
reader's copy (naive), on the demo's issue.

Run with `make bench`. Not a test: it prints medians and writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session

from benchmarks.report import BENCHMARKS_FILE, write_section
from pipeline.cli.demo import SAMPLES, rebased
from pipeline.config import Settings
from pipeline.content.importing import load_file, upsert
from pipeline.content.issues import build_issue, issue_comparisons
from pipeline.content.lineups import LineUp
from pipeline.email.editions import Editions
from pipeline.email.render import Recipient, personalise, render_issue
from pipeline.store.db import session_scope, upgrade
from pipeline.store.models import Issue, saved_id


def _lineups(order: LineUp, count: int) -> list[LineUp]:
    """``count`` distinct line-ups of the issue: its orderings, the issue's own first (a 5-comparison issue has 120)."""
    return list(itertools.islice(itertools.permutations(order), count))


def _run(session: Session, issue: Issue, settings: Settings, lineups: list[LineUp], readers: int, naive: int) -> dict:
    comparisons = issue_comparisons(session, issue)
    editions = Editions(comparisons, lambda lineup: render_issue(session, issue, settings, lineup=lineup))
    people = [Recipient(i, f"reader{i}@example.com", f"Reader {i}") for i in range(1, readers + 1)]
    each: list[float] = []
    started = time.perf_counter()
    for i, reader in enumerate(people):  # readers spread evenly over the line-ups, in id order as a send claims them
        t = time.perf_counter()
        personalise(editions.get(lineups[i % len(lineups)]), reader, settings)
        each.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    per_naive: list[float] = []
    for i, reader in enumerate(people[:naive]):
        t = time.perf_counter()
        personalise(render_issue(session, issue, settings, lineup=lineups[i % len(lineups)]), reader, settings)
        per_naive.append(time.perf_counter() - t)
    return {
        "renders": len(editions),
        "amortised_us": total / readers * 1e6,
        "median_us": statistics.median(each) * 1e6,
        "naive_us": statistics.median(per_naive) * 1e6,
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--naive-sample", type=int, default=64, help="naive renders actually timed (then scaled)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS_FILE)
    args = parser.parse_args()

    now = datetime.now(UTC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db", outbox_dir=Path(tmp) / "outbox", secret_key="bench"
        )
        upgrade(settings.database_url)
        with session_scope(settings.database_url) as session:
            upsert(session, rebased([r.comparison for r in load_file(SAMPLES / "comparisons.yaml")], now))
            issue = build_issue(session, now=now, tz=settings.tz, max_comparisons=5).issue
            order = tuple(saved_id(c) for c in issue_comparisons(session, issue))
            for count in (1, 8, 64):
                rows.append(
                    (count, _run(session, issue, settings, _lineups(order, count), args.readers, args.naive_sample))
                )

    lines = [
        "## Render once per line-up (reader interests)",
        "",
        f"Command: `make bench` (`python -m benchmarks.lineups --readers {args.readers}`), "
        f"{datetime.now(UTC):%Y-%m-%d}: "
        f"{args.readers:,} readers spread evenly over the line-ups (orderings of the demo issue's "
        f"{len(order)} comparisons); each distinct line-up is rendered the first time a reader needs it, then "
        f"shared. Naive renders every reader's copy ({args.naive_sample} timed per row, median).",
        "",
        "| distinct line-ups | renders | per reader, all included (mean) | per reader, median | naive per reader "
        "(median) | ratio to naive | all readers |",
        "|---|---|---|---|---|---|---|",
    ]
    for count, r in rows:
        lines.append(
            f"| {count} | {r['renders']} | {r['amortised_us']:.1f} µs | {r['median_us']:.1f} µs | "
            f"{r['naive_us'] / 1000:.1f} ms | **{r['naive_us'] / r['amortised_us']:.0f}×** | {r['total_s']:.2f} s |"
        )
    lines += [
        "",
        "\"All included\" is the whole send's render and personalise time over its readers: the line-ups' renders "
        "amortised. The target is at least 30× naive at 64 line-ups.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section(args.out, "lineups", report)


if __name__ == "__main__":
    main()
