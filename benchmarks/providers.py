"""Send rate of each HTTP provider against its loopback fake (tests/fakes/provider_api.py).

The whole campaign loop runs: claim, personalise (or merge on the provider's side),
HTTP to a real server on 127.0.0.1, record outcomes. The fake is a threaded stdlib
server that parses and checks every request, so these rates are a floor for our side,
not a prediction of the provider's. Run with `make bench`; writes a BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.report import BENCHMARKS_FILE, write_section
from pipeline.cli.demo import SAMPLES, rebased
from pipeline.config import Settings
from pipeline.content.importing import load_file, upsert
from pipeline.content.issues import approve, build_issue
from pipeline.delivery.providers import get_provider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope, upgrade
from tests.fakes.provider_api import FakeProviderAPI
from tests.fakes.readers import add_readers

CREDS = {
    "postmark": ({"token": "pm"}, {"postmark_server_token": "pm"}),
    "sendgrid": ({"api_key": "SG.x"}, {"sendgrid_api_key": "SG.x"}),
    "mailgun": (
        {"api_key": "key", "domain": "mg.example.com"},
        {"mailgun_api_key": "key", "mailgun_domain": "mg.example.com"},
    ),
    "resend": ({"api_key": "re_x"}, {"resend_api_key": "re_x"}),
    "ses": ({"access_key": "AKIDBENCH", "secret_key": "secret", "region": "eu-west-1"}, {"ses_region": "eu-west-1"}),
}


def one_run(name: str, readers: int, concurrency: int, tmp: Path) -> tuple[float, int]:
    fake_creds, settings_creds = CREDS[name]
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="secret")
    db = tmp / f"{name}-{time.monotonic_ns()}.db"
    with FakeProviderAPI(name, fake_creds) as fake:
        settings = Settings(
            database_url=f"sqlite:///{db}",
            secret_key="bench",
            provider=name,
            provider_base_url=fake.base_url,
            provider_concurrency=concurrency,
            **settings_creds,
        )
        upgrade(settings.database_url)
        now = datetime.now(UTC)
        with session_scope(settings.database_url) as session:
            upsert(session, rebased([r.comparison for r in load_file(SAMPLES / "comparisons.yaml")], now))
            issue = build_issue(session, now=now, tz=settings.tz, max_comparisons=5).issue
            approve(session, issue)
        add_readers(settings.database_url, readers)
        provider = get_provider(settings)
        try:
            t0 = time.perf_counter()
            summary = send_issue(settings, issue.id, provider)
            seconds = time.perf_counter() - t0
        finally:
            provider.close()
        if summary.sent != readers or fake.violations or len(fake.accepted) != readers:
            raise SystemExit(f"{name}: sent {summary.sent}/{readers}, violations {fake.violations[:3]}")
        return seconds, sum(1 for r in fake.requests if r.method == "POST")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=BENCHMARKS_FILE)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in CREDS:
            runs = [one_run(name, args.readers, args.concurrency, Path(tmp)) for _ in range(args.runs)]
            median = statistics.median(s for s, _ in runs)
            rows.append(
                f"| {name} | {runs[0][1]} | {median:.2f} s | **{args.readers / median:,.0f}/s** | "
                f"{median / args.readers * 1e6:.0f} µs |"
            )
            print(rows[-1], flush=True)
    report = "\n".join(
        [
            "## Send rate per provider (loopback fakes)",
            "",
            f"Command: `make bench` (`python -m benchmarks.providers --readers {args.readers} --runs {args.runs} "
            f"--concurrency {args.concurrency}`), "
            f"{datetime.now(UTC):%Y-%m-%d}, demo issue (64 KB HTML), whole campaign loop on SQLite, median of "
            f"{args.runs} runs.",
            "Mailgun and SendGrid merge on the provider's side (one body per request); Postmark and Resend carry a "
            "full copy per message; SES is one SigV4-signed call per message.",
            "",
            "| provider | requests | time for all readers | messages/s | per message |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    write_section(args.out, "providers", report)


if __name__ == "__main__":
    main()
