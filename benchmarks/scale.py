"""End-to-end sends at scale against lean loopback fakes, beside the raw HTTP ceiling.

For each provider shape (Postmark: one full copy per message; Mailgun: one body per 1,000
readers, merged on the provider's side) and list size: seed a fresh database, run the real
CLI (`verdicts run-weekly`, or `issue send --workers N`) as a child process against a lean
fake on 127.0.0.1, and record wall time, readers per second, CPU per reader and peak RSS. The
ceiling is the same fake fed pre-rendered request bodies by 4 threads of a client process of
its own (no database, no rendering), measured right before each run. Not a test; writes a
BENCHMARKS.md section. PostgreSQL rows use ``VERDICTS_BENCH_POSTGRES``, else a private server
that scripts/postgres-server.sh starts for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from benchmarks.lean_fake import LeanFake
from benchmarks.post import post
from benchmarks.report import BENCHMARKS_FILE, write_section
from pipeline.cli.demo import SAMPLES, rebased
from pipeline.content.importing import load_file, upsert
from pipeline.store.db import get_engine, session_scope, upgrade
from tests.fakes.readers import add_readers

SHAPES = {
    "postmark": {"path": "/email/batch", "per_request": 500, "env": {"VERDICTS_POSTMARK_SERVER_TOKEN": "pm"}},
    "mailgun": {
        "path": "/v3/mg.example.com/messages",
        "per_request": 1000,
        "env": {"VERDICTS_MAILGUN_API_KEY": "key", "VERDICTS_MAILGUN_DOMAIN": "mg.example.com"},
    },
}


def new_database(backend: str, tmp: Path, tag: str, copy_of: str | None = None, admin: str | None = None) -> str:
    """A new empty database, or a copy of ``copy_of`` (every repeat starts from the same seeded list); on the
    PostgreSQL server ``admin`` names (default: VERDICTS_BENCH_POSTGRES)."""
    if backend == "sqlite":
        target = tmp / f"{tag}.db"
        if copy_of:
            shutil.copyfile(sa.make_url(copy_of).database, target)
        return f"sqlite:///{target}"
    admin = admin or os.environ["VERDICTS_BENCH_POSTGRES"]
    name = re.sub(r"\W", "_", f"bench_{tag}")
    template = f" TEMPLATE {sa.make_url(copy_of).database}" if copy_of else ""
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}{template}"))
    engine.dispose()
    return sa.make_url(admin).set(database=name).render_as_string(hide_password=False)


def seed_database(url: str, readers: int) -> None:
    upgrade(url)
    with session_scope(url) as session:
        upsert(session, rebased([r.comparison for r in load_file(SAMPLES / "comparisons.yaml")], datetime.now(UTC)))
    for start in range(0, readers, 50_000):
        add_readers(url, min(50_000, readers - start), start)
    get_engine(url).dispose()


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024 if "VmRSS" in status else 0
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class ChildRun(NamedTuple):
    seconds: float
    rss_mb: float  # the process and its workers, sampled every 50 ms
    stdout: str
    cpu: float  # CPU seconds of the CLI and its workers
    harness_cpu: float  # CPU seconds of this process: the fake, the sampling


class Ceiling(NamedTuple):
    rate: float  # messages per second
    client_us: float  # CPU µs per message of the client
    fake_us: float  # of this process: the fake (and the client, when it runs in here)


def _child(args: list[str], env: dict[str, str], tmp: Path, module: str = "pipeline.cli.main") -> ChildRun:
    """Run the CLI (or ``module``) and measure it."""
    out_path, err_path = tmp / "child.out", tmp / "child.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        child_cpu, own_cpu = _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF)
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=out, stderr=err)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mb(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        child_cpu, own_cpu = _cpu(resource.RUSAGE_CHILDREN) - child_cpu, _cpu(resource.RUSAGE_SELF) - own_cpu
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {err_path.read_text()[-2000:]}")
    return ChildRun(seconds, peak, out_path.read_text(), child_cpu, own_cpu)


_SEEDED: dict[tuple[str, int], str] = {}


def _seeded(backend: str, readers: int, tmp: Path) -> str:
    """One seeded database per backend and list size, copied for every run that needs it."""
    if (backend, readers) not in _SEEDED:
        url = new_database(backend, tmp, f"seed_{readers}_{backend}")
        seed_database(url, readers)
        _SEEDED[backend, readers] = url
    return _SEEDED[backend, readers]


def end_to_end(
    shape: str,
    readers: int,
    backend: str,
    workers: int,
    tmp: Path,
    repeat: int,
    paired: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The median of ``repeat`` runs (the machine's noise is a tenth either way), each on a copy of one seeded list.

    ``paired`` measures the ceiling right before each run: this machine's speed drifts by half
    between hours, so a run is set beside the ceiling of its own moment, not one from minutes before.

    ``backend`` "none": `benchmarks.alone` in the CLI's place, on a database with the issue's content and no readers."""
    alone = backend == "none"
    store = "sqlite" if alone else backend
    seeded = _seeded(store, 0 if alone else readers, tmp)
    runs = []
    for attempt in range(repeat):
        top = paired() if paired else 0.0
        fake = LeanFake(shape)
        try:
            url = new_database(store, tmp, f"{shape}_{readers}_{workers}_{backend}_{attempt}", copy_of=seeded)
            env = {
                **os.environ,
                "VERDICTS_DATABASE_URL": url,
                "VERDICTS_PROVIDER": shape,
                "VERDICTS_PROVIDER_BASE_URL": fake.url,
                "VERDICTS_SECRET_KEY": "bench",
                "VERDICTS_REQUIRE_APPROVAL": "false",
                "VERDICTS_PROVIDER_CONCURRENCY": "4",
                "VERDICTS_OUTBOX_DIR": str(tmp / "outbox"),
                **SHAPES[shape]["env"],
            }
            if alone:
                run = _child([str(readers)], env, tmp, module="benchmarks.alone")
            elif workers == 1:
                run = _child(["run-weekly"], env, tmp)
            else:
                _child(["issue", "build"], env, tmp)
                _child(["issue", "approve", "1"], env, tmp)
                run = _child(["issue", "send", "1", "--workers", str(workers)], env, tmp)
            if fake.accepted != readers or "finished" not in run.stdout:
                raise SystemExit(f"{shape} {readers}: the fake accepted {fake.accepted}, output {run.stdout[-500:]}")
            runs.append(
                {
                    "seconds": run.seconds,
                    "rate": readers / run.seconds,
                    "rss": run.rss_mb,
                    "ceiling": top,
                    "of_ceiling": readers / run.seconds / top if top else 0.0,
                    "send_us": run.cpu / readers * 1e6,
                    "fake_us": run.harness_cpu / readers * 1e6,
                }
            )
        finally:
            fake.close()
        if store == "sqlite":
            Path(sa.make_url(url).database).unlink()
    median = {
        key: statistics.median(r[key] for r in runs)
        for key in ("seconds", "rate", "send_us", "fake_us", "ceiling", "of_ceiling")
    }
    return {**median, "rss": max(r["rss"] for r in runs), "runs": [(r["rate"], r["of_ceiling"]) for r in runs]}


def ceiling(shape: str, readers: int, tmp: Path, own_process: bool = True) -> Ceiling:
    """Messages per second the fake takes from a client process of its own (4 threads, like the
    send's 4 in flight) posting one pre-rendered request body again and again, and the CPU µs per
    message of the client and of this process (the fake). With ``own_process=False`` the client
    threads share the fake's interpreter (and its lock): the method of earlier reports, which
    understates what a separate sender can get through; its CPU is then the client's and the fake's together."""
    from benchmarks.alone import rendered_issue
    from pipeline.config import Settings
    from pipeline.delivery.messages import build_message
    from pipeline.delivery.providers import get_provider
    from pipeline.email.render import Recipient

    url = f"sqlite:///{tmp / f'ceiling_{shape}.db'}"
    seed_database(url, 0)
    settings = Settings(
        database_url=url,
        secret_key="bench",
        provider=shape,  # builds the requests; the client process sends them
        postmark_server_token="pm",
        mailgun_api_key="key",
        mailgun_domain="mg.example.com",
    )
    per = SHAPES[shape]["per_request"]
    rendered = rendered_issue(settings)
    messages = [
        build_message(rendered, Recipient(i, f"r{i}@example.com", f"R {i}"), settings, delivery_id=i, campaign="c")
        for i in range(per)
    ]
    provider = get_provider(settings)
    # The requests the real send makes: the provider's own chunks (count and byte limits).
    chunk = next(provider.chunks(messages))
    body, headers = provider.build_request(chunk, "c").content()
    provider.close()
    body_file = tmp / f"ceiling_{shape}.body"
    body_file.write_bytes(body)
    requests = max(4, readers // len(chunk))
    fake = LeanFake(shape)
    own_cpu = _cpu(resource.RUSAGE_SELF)
    try:
        if own_process:
            seconds, client_cpu = map(
                float,
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.post",
                        fake.url,
                        SHAPES[shape]["path"],
                        str(body_file),
                        json.dumps(headers),
                        "4",
                        str(requests),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split(),
            )
        else:
            seconds, client_cpu = post(fake.url, SHAPES[shape]["path"], body, headers, 4, requests)
    finally:
        fake.close()
    messages = requests * len(chunk)
    return Ceiling(
        messages / seconds, client_cpu / messages * 1e6, (_cpu(resource.RUSAGE_SELF) - own_cpu) / messages * 1e6
    )


def yardstick_ms() -> float:
    """Milliseconds for a fixed piece of pure-Python work, median of 5. This VM's speed drifts by
    half between hours (the same code, the same rows), so a report carries its own measure of it."""

    def work() -> int:
        total = 0
        for i in range(1_000_000):
            total += i * i % 7
        return total

    times = []
    for _ in range(5):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


#: What ``make bench`` measures: the issue's list sizes on both shapes, the Postmark shape without its
#: database (where its limit is), and 1, 2 and 4 senders on PostgreSQL for both shapes.
DEFAULT_RUNS = [
    "mailgun:100000",
    "mailgun:1000000",
    "postmark:100000",
    "postmark:1000000",
    "postmark:100000:none",
    "mailgun:100000:postgresql:1",
    "mailgun:100000:postgresql:2",
    "mailgun:100000:postgresql:4",
    "postmark:100000:postgresql:1",
    "postmark:100000:postgresql:2",
    "postmark:100000:postgresql:4",
]


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """``VERDICTS_BENCH_POSTGRES``, else a private server for this run (stopped after it); None
    where PostgreSQL is not installed."""
    if os.environ.get("VERDICTS_BENCH_POSTGRES"):
        yield os.environ["VERDICTS_BENCH_POSTGRES"]
        return
    script = Path(__file__).resolve().parent.parent / "scripts" / "postgres-server.sh"
    started = subprocess.run([str(script), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        print(
            f"PostgreSQL rows skipped: {started.stderr.strip()} (or set VERDICTS_BENCH_POSTGRES to a server's URL)",
            file=sys.stderr,
        )
        yield None
        return
    data = started.stderr.split("PostgreSQL data in ", 1)[1].split()[0]
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", data], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=DEFAULT_RUNS,
        help=(
            "shape:readers[:backend[:workers]], e.g. mailgun:100000:postgresql:4; backend none: the provider code alone"
        ),
    )
    parser.add_argument("--out", type=Path, default=BENCHMARKS_FILE)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the row shows the median")
    args = parser.parse_args()
    wants_postgres = any(":postgresql" in spec for spec in args.runs)
    with postgres_server() if wants_postgres else nullcontext() as server:
        if server:
            os.environ["VERDICTS_BENCH_POSTGRES"] = server
        elif wants_postgres:
            args.runs = [spec for spec in args.runs if ":postgresql" not in spec]
        measure(args.runs, args.repeat, args.out)


def measure(runs: list[str], repeat: int, out: Path) -> None:
    rows = []
    speed = [yardstick_ms()]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        measured: dict[str, list[Ceiling]] = {}  # every ceiling of a shape, for its client and fake CPU
        shared: dict[str, float] = {}
        for spec in runs:
            shape, readers, *rest = spec.split(":")
            backend = rest[0] if rest else "sqlite"
            readers_n, workers_n = int(readers), int(rest[1]) if len(rest) > 1 else 1
            if shape not in shared:
                measured[shape] = []
                shared[shape] = statistics.median(ceiling(shape, 20_000, tmp, own_process=False).rate for _ in range(3))

            def paired(shape: str = shape) -> float:
                measured[shape].append(ceiling(shape, 20_000, tmp))
                return measured[shape][-1].rate

            result = end_to_end(shape, readers_n, backend, workers_n, tmp, repeat, paired)
            command = (
                "provider code alone"
                if backend == "none"
                else "run-weekly"
                if workers_n == 1
                else f"issue send --workers {workers_n}"
            )
            each = " / ".join(f"{rate:,.0f} ({share:.2g})" for rate, share in result["runs"])
            rows.append(
                f"| {shape} | {readers_n:,} | {backend} | {command} | {result['seconds']:.1f} s | "
                f"**{result['rate']:,.0f}/s** | "
                f"{each} | {result['ceiling']:,.0f}/s | **{result['of_ceiling']:.2g}** | "
                f"{result['send_us']:.0f} / {result['fake_us']:.0f} µs | {result['rss']:.0f} MB |"
            )
            print(rows[-1], flush=True)
    speed.append(yardstick_ms())
    report = "\n".join(
        [
            "## End to end at scale (lean loopback fakes)",
            "",
            f"Command: `python -m benchmarks.scale --runs {' '.join(runs)} --repeat {repeat}`, "
            f"{datetime.now(UTC):%Y-%m-%d}, "
            "2 cores, demo issue (11 tools: 3 signed links per reader). Each row: the median of the runs listed, "
            "each on a fresh copy of one database seeded with confirmed readers, running the real CLI as a child "
            "process (start-up included) against a fake that counts messages without parsing them. Ceiling: the same "
            "fake fed one pre-rendered request body, chunked as the real send chunks it, by 4 threads of a client "
            "process of its own, as the send is (no database, no rendering), measured right before each run: the "
            "machine's speed drifts by half between hours, so each run is set beside the ceiling of its own moment. "
            "The row shows the median of those ceilings and the median of the runs' shares of their own ceiling "
            "(each run's share in brackets). Peak RSS: the CLI process and its worker processes together, sampled "
            "every 50 ms. Database none: `benchmarks.alone` in the CLI's place, the same start-up, rendering, "
            "message building and provider code, with readers made up in memory and nothing claimed or recorded.",
            "",
            "| shape | readers | database | command | wall | readers/s (median) | each run (of its ceiling) | raw "
            "ceiling | of ceiling | CPU per reader: send / fake | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "CPU per reader: user plus system time of the CLI (with its worker processes), and of the benchmark "
            "process that runs the fake (and samples RSS), over the readers; medians of the runs. The ceiling's "
            "client and fake, per message, medians over every ceiling: "
            + ", ".join(
                f"{shape} {statistics.median(c.client_us for c in cs):.0f} µs and "
                f"{statistics.median(c.fake_us for c in cs):.0f} µs"
                for shape, cs in measured.items()
            )
            + ". "
            "Both processes share the machine's 2 cores. PostgreSQL rows: the server at `VERDICTS_BENCH_POSTGRES`, "
            "else a private one that `scripts/postgres-server.sh` starts for the run (loopback, fsync off).",
            "",
            "The machine's speed (`benchmarks.scale.yardstick_ms`, a fixed pure-Python loop, lower is faster): "
            f"{speed[0]:.0f} ms before the runs, {speed[1]:.0f} ms after.",
            "",
            "The same ceiling with the 4 client threads inside the fake's own process (how earlier reports measured "
            "it; the threads then take turns with the fake for one interpreter): "
            + ", ".join(f"{shape} {rate:,.0f}/s" for shape, rate in shared.items())
            + ".",
            "",
        ]
    )
    write_section(out, "scale", report)


if __name__ == "__main__":
    socket.setdefaulttimeout(120)
    # Stopped from outside (`kill`, a CI timeout): unwind, so the private PostgreSQL server is stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()
