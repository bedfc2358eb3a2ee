"""Render once + personalise vs naive per-reader Jinja → MJML, on the demo's issue.

Run with `make bench`. Not a test: it prints medians and writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mjml import mjml2html

from benchmarks.report import BENCHMARKS_FILE, write_section
from pipeline.cli.demo import SAMPLES, rebased
from pipeline.config import Settings
from pipeline.content.importing import load_file, upsert
from pipeline.content.issues import build_issue, issue_comparisons
from pipeline.content.votes import reader_votes
from pipeline.email.render import Recipient, _context, jinja_env, personal_values, personalise, render_issue
from pipeline.store.db import session_scope, upgrade


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--naive-sample", type=int, default=200, help="naive renders actually timed (then scaled)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS_FILE)
    args = parser.parse_args()

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db", outbox_dir=Path(tmp) / "outbox", secret_key="bench"
        )
        upgrade(settings.database_url)
        with session_scope(settings.database_url) as session:
            upsert(session, rebased([r.comparison for r in load_file(SAMPLES / "comparisons.yaml")], now))
            issue = build_issue(session, now=now, tz=settings.tz, max_comparisons=5).issue
            t0 = time.perf_counter()
            rendered = render_issue(session, issue, settings)
            compile_s = time.perf_counter() - t0
            comparisons = issue_comparisons(session, issue)
            context = _context(
                issue, comparisons, settings, reader_votes(session, [t.id for c in comparisons for t in c.tools])
            )

        readers = [Recipient(i, f"reader{i}@example.com", f"Reader {i}") for i in range(1, args.readers + 1)]
        once: list[float] = []
        t_all = time.perf_counter()
        for r in readers:
            t = time.perf_counter()
            personalise(rendered, r, settings)
            once.append(time.perf_counter() - t)
        once_total = compile_s + (time.perf_counter() - t_all)

        env = jinja_env()
        template = env.get_template("email/weekly.mjml.j2")
        naive: list[float] = []
        for r in readers[: args.naive_sample]:
            t = time.perf_counter()
            # The same signed links (private links and one voting link per tool) as the real path.
            ctx = dict(context, personal=personal_values(settings, rendered, r))
            mjml2html(template.render(ctx))
            naive.append(time.perf_counter() - t)

    once_us, naive_us = _median_us(once), _median_us(naive)
    naive_total = statistics.median(naive) * args.readers
    lines = [
        "## Render once vs per reader",
        "",
        f"Command: `make bench` (`python -m benchmarks.render_once --readers {args.readers}`), "
        f"{datetime.now(UTC):%Y-%m-%d}, HTML {rendered.lint.html_bytes / 1024:.1f} KB per copy (demo issue, 5 "
        "comparisons).",
        "",
        "| | per reader (median) | for all readers |",
        "|---|---|---|",
        f"| render once ({compile_s * 1000:.1f} ms compile) + personalise | {once_us:.1f} µs | {once_total:.2f} s "
        f"for {args.readers:,} |",
        f"| naive Jinja → MJML per reader ({args.naive_sample} timed) | {naive_us:.0f} µs | ≈ {naive_total:.1f} s "
        f"for {args.readers:,} |",
        f"| ratio per reader | **{naive_us / once_us:.0f}×** | ≈ {naive_total / once_total:.0f}× |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section(args.out, "render", report)


if __name__ == "__main__":
    main()
