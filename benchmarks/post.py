"""The raw HTTP client of the ceiling: one pre-rendered body, posted again and again by N threads.

A process of its own, like the real send, so the client does not share the fake's interpreter:
``python -m benchmarks.post URL PATH BODY_FILE HEADERS_JSON THREADS REQUESTS`` prints seconds and CPU seconds.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def post(url: str, path: str, body: bytes, headers: dict[str, str], threads: int, requests: int) -> tuple[float, float]:
    """Seconds and CPU seconds (this process, every thread) for ``requests`` posts of ``body``,
    ``threads`` at a time, after one to connect."""
    with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(threads) as pool:
        client.post(path, content=body, headers=headers).raise_for_status()
        started, cpu = time.perf_counter(), time.process_time()
        list(pool.map(lambda _: client.post(path, content=body, headers=headers).raise_for_status(), range(requests)))
        return time.perf_counter() - started, time.process_time() - cpu


if __name__ == "__main__":
    url, path, body_file, headers, threads, requests = sys.argv[1:7]
    print(*post(url, path, Path(body_file).read_bytes(), json.loads(headers), int(threads), int(requests)))
