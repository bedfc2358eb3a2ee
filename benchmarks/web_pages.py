"""The public pages an issue brings its readers to, timed over real HTTP, with and without votes.

Once an issue is out, its readers click "ship" or "skip" and open the web version; every one of
those pages shows the community split, counted from the votes. For each vote count: seed a
database with the demo content, a sent issue and that many votes from readers, run the real
`verdicts serve` as a child process on a loopback port, and time each page. Not a test; writes
a BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from benchmarks.report import BENCHMARKS_FILE, write_section
from benchmarks.scale import seed_database
from pipeline.content.issues import build_issue
from pipeline.content.votes import VERDICTS
from pipeline.store.db import get_engine, session_scope
from pipeline.store.models import IssueItem, IssueStatus, Tool, Vote, utcnow
from subscribers.tokens import make_vote_token

SECRET = "benchmark-secret-that-is-long-enough-for-the-web-app"
#: Readers who click during the timing: each casts a new vote, as after a real send.
CLICKERS = 200


def seeded(url: str, votes: int, readers: int | None = None) -> tuple[str, int, list[int]]:
    """A sent issue, ``readers`` readers (default: the voters and CLICKERS more), and ``votes`` votes on its
    tools from the first readers: the week, issue id and tool ids."""
    seed_database(url, votes + CLICKERS if readers is None else readers)
    with session_scope(url) as session:
        issue = build_issue(session, now=datetime.now(UTC), tz=UTC, max_comparisons=5).issue
        issue.status, issue.sent_at = IssueStatus.sent, utcnow()
        session.add(issue)
        session.flush()
        carried = select(IssueItem.comparison_id).where(IssueItem.issue_id == issue.id)
        tools = list(session.exec(select(Tool.id).where(col(Tool.comparison_id).in_(carried))))
        week, issue_id = issue.week, issue.id
    now, pick = utcnow(), random.Random(7)
    for start in range(0, votes, 50_000):
        rows = [
            {
                "tool_id": pick.choice(tools),
                "subscriber_id": i + 1,
                "issue_id": issue_id,
                "verdict": pick.choice(VERDICTS),
                "voted_at": now,
            }
            for i in range(start, min(votes, start + 50_000))
        ]
        with session_scope(url) as session:
            session.execute(sa.insert(Vote.__table__), rows)
    get_engine(url).dispose()
    return week, issue_id, tools


@contextmanager
def serving(url: str, command: list[str], ready: str = "/issues") -> Iterator[str]:
    """The web app as a child process on a free loopback port (``command`` gets ``--port N`` appended), once
    ``ready`` answers; stopped afterwards. Yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "VERDICTS_DATABASE_URL": url,
        "VERDICTS_SECRET_KEY": SECRET,
        "VERDICTS_BASE_URL": base,
        "VERDICTS_PROVIDER": "outbox",
        "VERDICTS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, *command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}{ready}", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"the web app did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                    ) from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _median_ms(request: Callable[[int], httpx.Response], times: int) -> float:
    for i in range(3):  # warm: the first requests compile templates and open connections
        request(i).raise_for_status()
    timings = []
    for i in range(3, 3 + times):
        started = time.perf_counter()
        request(i).raise_for_status()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def measure(votes: int, tmp: Path, times: int) -> dict[str, float]:
    url = f"sqlite:///{tmp / f'web_{votes}.db'}"
    week, issue_id, tools = seeded(url, votes)
    with serving(url, ["-m", "pipeline.cli.main", "serve"]) as base, httpx.Client(base_url=base, timeout=60) as client:

        def click(i: int) -> httpx.Response:
            reader = votes + 1 + i % CLICKERS  # one who has not voted yet: each click records a new vote
            return client.post(f"/vote/{make_vote_token(SECRET, reader, issue_id)}/{tools[i % len(tools)]}/ship")

        started = time.perf_counter()
        client.get(f"/issues/{week}").raise_for_status()  # rendered here, then served as rendered for a minute
        rendered_ms = (time.perf_counter() - started) * 1000
        return {
            "web version, its first request (renders it; again once a minute per web process; one request)": (
                rendered_ms
            ),
            "web version (`/issues/<week>`)": _median_ms(lambda i: client.get(f"/issues/{week}"), times),
            "a reader's vote (POST `/vote/…`, the thanks page with the split)": _median_ms(
                click, min(times, CLICKERS - 3)
            ),
            "community splits (`/votes.json`)": _median_ms(lambda i: client.get("/votes.json"), times),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--votes", type=int, default=300_000, help="votes cast before the timing (a run with none comes first)"
    )
    parser.add_argument("--times", type=int, default=60, help="requests timed per page")
    parser.add_argument("--out", type=Path, default=BENCHMARKS_FILE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = measure(0, Path(tmp), args.times), measure(args.votes, Path(tmp), args.times)
    rows = [f"| {page} | {empty[page]:.1f} ms | {full[page]:.1f} ms |" for page in empty]
    write_section(
        args.out,
        "web",
        "\n".join(
            [
                "## Public pages with many votes (real HTTP)",
                "",
                f"Command: `make bench` (`python -m benchmarks.web_pages --votes {args.votes} --times {args.times}`), "
                f"{datetime.now(UTC):%Y-%m-%d}, SQLite, demo issue marked sent, `verdicts serve` on a loopback port, "
                "median of the timed requests (after 3 to warm up). Each vote is a different reader's.",
                "",
                f"| page | no votes | {args.votes:,} votes |",
                "|---|---|---|",
                *rows,
            ]
        ),
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
