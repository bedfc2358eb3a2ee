"""The public pages under the burst that follows a send, measured with a real load generator (wrk).

Minutes after an issue goes out, its readers vote, unsubscribe with one click and open the web
version. For SQLite and PostgreSQL: seed a sent issue with readers and votes, run the web app
with 2 uvicorn workers (the app of `verdicts serve`, plus one bare route that does a single indexed
INSERT, the yardstick for what a write can cost in this app), and drive each endpoint with wrk
(8 connections, 2 threads). Every vote request is a new vote (another reader or the other
verdict), every one-click unsubscribe a reader who is still subscribed. Not a test; writes a
BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from benchmarks.report import BENCHMARKS_FILE, write_section
from benchmarks.scale import new_database, postgres_server
from benchmarks.web_pages import SECRET, seeded, serving
from pipeline.store.db import get_engine, session_scope, write_scope
from subscribers.tokens import UNSUBSCRIBE, make_token, make_vote_token

BENCH_TABLE = sa.table("bench_hit", sa.column("key", sa.String), sa.column("at", sa.DateTime))
#: wrk's script: each thread walks its own share of a file of requests (method, path, body).
LUA = """
local lines, n, id, threads = {}, 0, 0, 1
function setup(thread) thread:set("id", n); n = n + 1 end
function init(args)
  threads = tonumber(args[2])
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
  i = id
end
function request()
  local method, path, body = lines[i % #lines + 1]:match("^(%S+) (%S+) ?(.*)$")
  i = i + threads
  if body == "" then body = nil end
  return wrk.format(method, path, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""


def bench_app() -> FastAPI:
    """The web app of `verdicts serve`, plus the bare write it is measured against."""
    from pipeline.config import get_settings
    from pipeline.web.app import create_app

    app = create_app()
    url = get_settings().database_url

    @app.post("/bench/insert")
    def insert() -> dict[str, bool]:
        with write_scope(url) as session:  # the way the app's public pages write
            session.execute(BENCH_TABLE.insert().values(key=os.urandom(8).hex(), at=datetime.now(UTC)))
        return {"ok": True}

    return app


LIMITS = """What limits them: the two cores. wrk and both workers are CPU-bound, so requests/s is the CPU one request
costs: the bare INSERT is HTTP, routing, the security headers and one statement; a vote adds the token check, one
joined query, its INSERT and the thanks page; an unsubscribe adds the consent record and the suppression; the web
version is served as rendered (once a minute per worker) after one indexed lookup. On SQLite the writes of every
process take turns (`db.write_scope`: a lock file, then `BEGIN IMMEDIATE`); SQLite's own busy handler, which they
used before, slept up to 100 ms a try and put p99 over a second. The split a vote shows is counted once a minute per
worker and moved by that worker's own votes, as the web version's is at most a minute old."""


class Load(NamedTuple):
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(base: str, requests: Path, script: Path, seconds: int, connections: int) -> Load:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            base,
            "--",
            str(requests),
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if "99" not in latency:
        raise SystemExit(f"wrk said:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(rps, _ms(latency["50"]), _ms(latency["99"]), int(errors.group(1)) if errors else 0)


def _prepare(url: str, readers: int, votes: int) -> tuple[str, int, list[int]]:
    week, issue_id, tools = seeded(url, votes, readers)
    with session_scope(url) as session:
        session.execute(
            sa.text(
                "CREATE TABLE bench_hit (id INTEGER PRIMARY KEY, key VARCHAR(32) NOT NULL, at TIMESTAMP)"
                if url.startswith("sqlite")
                else "CREATE TABLE bench_hit (id SERIAL PRIMARY KEY, key VARCHAR(32) NOT NULL, at TIMESTAMPTZ)"
            )
        )
        session.execute(sa.text("CREATE INDEX ix_bench_hit_key ON bench_hit (key)"))
    get_engine(url).dispose()
    return week, issue_id, tools


def measure(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Load]:
    """Each endpoint in turn, ``args.repeat`` rounds (side by side); the medians of the rounds."""
    week, issue_id, tools = _prepare(url, args.readers, args.votes)
    clickers = range(args.votes + 1, args.readers + 1)  # readers past the voters: each click is a new vote
    plans = {
        "bare INSERT (`POST /bench/insert`, the yardstick)": ["POST /bench/insert"],
        "vote (`POST /vote/…`)": [
            f"POST /vote/{make_vote_token(SECRET, r, issue_id)}/{tools[(r + k) % len(tools)]}/{v}"
            for k, v in ((0, "ship"), (1, "skip"))
            for r in clickers
        ],
        "one-click unsubscribe (`POST /unsubscribe/…`)": [
            f"POST /unsubscribe/{make_token(SECRET, UNSUBSCRIBE, r)} List-Unsubscribe=One-Click"
            for r in range(1, args.readers + 1)
        ],
        "web version (`GET /issues/<week>`)": [f"GET /issues/{week}"],
    }
    script, requests = tmp / "burst.lua", tmp / "requests.txt"
    script.write_text(LUA)
    rounds: dict[str, list[Load]] = {name: [] for name in plans}
    command = [
        "-m",
        "uvicorn",
        "benchmarks.web_burst:bench_app",
        "--factory",
        "--workers",
        "2",
        "--no-access-log",
        "--no-server-header",
        "--no-proxy-headers",
    ]  # what `verdicts serve --workers 2` runs, and one route
    with serving(url, command, ready="/healthz") as base:
        httpx.get(f"{base}/issues/{week}").raise_for_status()  # each worker renders it once a minute; warm one
        for k in range(args.repeat):
            for name, lines in plans.items():
                # A round of its own share of the requests: a reader who left, or a vote already cast, writes nothing.
                requests.write_text("\n".join(lines[k :: args.repeat] or lines) + "\n")
                rounds[name].append(wrk(base, requests, script, args.seconds, args.connections))
                print(f"{url.split(':')[0]:10} round {k + 1} {name}: {rounds[name][-1]}", flush=True)
    return {
        name: Load(*(statistics.median(field) for field in zip(*loads, strict=True))) for name, loads in rounds.items()
    }


def _rows(name: str, results: dict[str, Load]) -> list[str]:
    bare = next(iter(results.values())).requests_per_second
    return [
        f"| {name} | {page} | {r.requests_per_second:,.0f} | {r.requests_per_second / bare:.2f} | {r.p50_ms:.1f} ms "
        f"| {r.p99_ms:.1f} ms | {r.non_2xx} |"
        for page, r in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=110_000)
    parser.add_argument("--votes", type=int, default=100_000, help="votes cast before the burst (by the first readers)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk's duration per endpoint")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every endpoint; the table shows medians")
    parser.add_argument("--out", type=Path, default=BENCHMARKS_FILE)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += _rows("SQLite", measure(f"sqlite:///{Path(tmp) / 'burst.db'}", Path(tmp), args))
        with postgres_server() as server:
            if server:
                url = new_database("postgresql", Path(tmp), "burst", admin=server)
                rows += _rows("PostgreSQL", measure(url, Path(tmp), args))
    write_section(
        args.out,
        "burst",
        "\n".join(
            [
                "## Public pages under a burst (wrk, 2 web workers)",
                "",
                f"Command: `python -m benchmarks.web_burst --readers {args.readers} --votes {args.votes} "
                f"--seconds {args.seconds} --connections {args.connections} --repeat {args.repeat}`, "
                f"{datetime.now(UTC):%Y-%m-%d}, one machine of 2 cores shared by wrk and the 2 uvicorn workers "
                "(the app of `verdicts serve`); PostgreSQL is a private server on loopback with fsync off. Each "
                "endpoint in turn for the given seconds, the rounds one after another; the figures are the medians "
                "of the rounds, the ratio is to the bare INSERT of the same run.",
                "",
                "| database | endpoint | requests/s | ratio to bare | p50 | p99 | non-2xx |",
                "|---|---|---|---|---|---|---|",
                *rows,
                "",
                LIMITS,
            ]
        ),
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
