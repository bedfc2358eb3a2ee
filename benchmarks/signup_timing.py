"""Does the sign-up form's answer tell a known address from an unknown one? Timed over real HTTP on loopback.

Runs the real `verdicts serve` as a child process on a loopback port (outbox provider, a fresh SQLite
database with confirmed readers) and posts the form, alternating an address already on the list (nothing
is emailed) and a new one (a confirmation is rendered and written to the outbox), and prints each kind's
median answer time. The sign-up is carried out after the answer (``subscribers.signup_routes``), so the two
should be the same. Not a test: ``python -m benchmarks.signup_timing [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pipeline.store.db import session_scope, upgrade
from subscribers.service import add_subscriber

SECRET = "benchmark-secret-that-is-long-enough-for-the-web-app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def measure(rounds: int, pause: float) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="signup-timing-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'verdicts.db'}"
        upgrade(url)
        with session_scope(url) as session:
            for i in range(rounds):
                add_subscriber(session, f"known{i}@example.com", f"Known {i}", confirmed=True)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VERDICTS_")},
            "VERDICTS_DATABASE_URL": url,
            "VERDICTS_SECRET_KEY": SECRET,
            "VERDICTS_BASE_URL": base,
            "VERDICTS_OUTBOX_DIR": str(Path(tmp) / "outbox"),
            "VERDICTS_SIGNUP_LIMIT_PER_IP": "1000000",
        }
        verdicts = Path(sys.executable).with_name("verdicts")
        proc = subprocess.Popen(
            [str(verdicts), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            times: dict[str, list[float]] = {"known": [], "unknown": []}
            with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("verdicts serve did not start")
                    time.sleep(0.1)
                for _ in range(20):  # warm-up: templates, MJML, connections
                    http.post("/subscribe", data={"email": f"warm{_}@example.com", "name": "W"})
                    time.sleep(pause)
                for i in range(rounds):
                    for kind, address in (("known", f"known{i}@example.com"), ("unknown", f"new{i}@example.com")):
                        start = time.perf_counter()
                        answer = http.post("/subscribe", data={"email": address, "name": "Someone"})
                        times[kind].append((time.perf_counter() - start) * 1000)
                        assert answer.status_code == 303, answer.status_code
                        time.sleep(pause)  # let the previous background work finish: time the answers alone
            emailed = len(list((Path(tmp) / "outbox" / "confirmations").glob("*.eml")))
            print(f"confirmation emails written: {emailed} (20 warm-up + {rounds} unknown expected)")
            return times
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="sign-ups of each kind")
    parser.add_argument("--pause", type=float, default=0.03, help="seconds between two sign-ups")
    args = parser.parse_args()
    times = measure(args.rounds, args.pause)
    for kind, values in times.items():
        q = statistics.quantiles(values, n=20)
        print(f"{kind:>8}: median {statistics.median(values):.2f} ms, p5 {q[0]:.2f} ms, p95 {q[-1]:.2f} ms")


if __name__ == "__main__":
    main()
