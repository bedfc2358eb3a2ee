"""`verdicts serve --workers 2` as an operator runs it, over real HTTP on loopback: the sign-up limits,
the login lock-out and the editor sessions hold across web processes, and forwarded headers are
believed only from VERDICTS_TRUSTED_PROXIES.

Every request is made on a connection whose serving process the test knows (from /proc, by the
connection's ports), so "the other worker" is a fact checked on each answer, not a hope.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from pipeline.config import Settings, get_settings
from pipeline.store.db import session_scope, upgrade
from subscribers.models import ConsentRecord
from tests.conftest import settled, settled_outbox, wait_until_serving

PASSWORD = "correct horse battery staple"
LOCKED = "Too many failed attempts"


def _children(pid: int) -> set[int]:
    """``pid`` and every process under it (uvicorn's supervisor spawns the workers)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            todo += [int(child) for child in (task / "children").read_text().split()]
    return found


def _serving_pid(server_port: int, client_port: int, pids: set[int]) -> int | None:
    """The process that holds the server's end of the connection from ``client_port``."""
    wanted = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = f"socket:[{fields[9]}]"
            break
    else:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == inode:
                    return pid
            except OSError:  # closed meanwhile
                continue
    return None


@dataclass
class Server:
    base: str
    port: int
    proc: subprocess.Popen
    settings: Settings
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def pid_of(self, response: httpx.Response) -> int | None:
        client_port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        return _serving_pid(self.port, client_port, _children(self.proc.pid))


class Worker:
    """An HTTP client whose keep-alive connection one known worker serves; every answer is checked to come from it."""

    def __init__(self, server: Server, http: httpx.Client, pid: int) -> None:
        self.server, self.http, self.pid = server, http, pid

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        assert self.server.pid_of(response) == self.pid, "the answer came from another worker than the test meant"
        return response

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def two_workers(server: Server) -> tuple[Worker, Worker]:
    """A client pinned to each of the two workers: new connections until both have answered one (the
    second may still be starting)."""
    pinned: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + 30
    while len(pinned) < 2 and time.monotonic() < deadline:
        http = httpx.Client(base_url=server.base, follow_redirects=False, timeout=30)
        pid = server.pid_of(http.get("/healthz"))
        if pid is not None and pid not in pinned:
            pinned[pid] = http
            server.clients.append(http)
        else:
            http.close()
            time.sleep(0.02)
    if len(pinned) < 2:
        pytest.fail(f"in 30 s, new connections reached only the workers {sorted(pinned)}")
    (pid_a, a), (pid_b, b) = pinned.items()
    return Worker(server, a, pid_a), Worker(server, b, pid_b)


@pytest.fixture
def serve(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """Start the real `verdicts serve --workers 2` on a free loopback port with extra settings."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        for key, value in {"BASE_URL": base, "EDITOR_PASSWORD": PASSWORD, **env}.items():
            monkeypatch.setenv(f"VERDICTS_{key}", value)
        get_settings.cache_clear()
        settings = get_settings()
        upgrade(settings.database_url)
        log = workdir / f"serve-{port}.log"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "pipeline.cli.main", "serve", "--port", str(port), "--workers", "2"]
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        server = Server(base, port, proc, settings, log)
        started.append(server)
        wait_until_serving(base, proc, 60, log.read_text)
        return server

    yield start
    for server in started:
        for http in server.clients:
            http.close()
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def _login(worker: Worker, password: str, headers: dict | None = None) -> httpx.Response:
    form = worker.get("/editor/login", headers=headers)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return worker.post("/editor/login", data={"password": password, "csrf": csrf, "next": "/editor"}, headers=headers)


def _sign_up(worker: Worker, email: str, headers: dict | None = None) -> httpx.Response:
    return worker.post(
        "/subscribe", data={"email": email, "name": "", "website": ""}, headers=headers, follow_redirects=True
    )


def _cookie(response: httpx.Response, name: str) -> str:
    """The Set-Cookie line of one cookie."""
    return next(line for line in response.headers.get_list("set-cookie") if line.startswith(f"{name}="))


def _consent_ips(settings: Settings) -> list[str | None]:
    """Once the sign-ups' background work has landed (it runs after each answer)."""

    def read() -> list[str | None]:
        with session_scope(settings.database_url) as session:
            return [r.ip for r in session.exec(select(ConsentRecord).order_by(ConsentRecord.id)).all()]

    return settled(read)


def test_failed_logins_on_both_workers_add_up_to_the_lockout(serve):
    server = serve()
    a, b = two_workers(server)
    attempts = server.settings.editor_lockout_attempts
    for i in range(attempts):
        assert _login((a, b)[i % 2], "wrong").status_code == 401
    # Worker b saw fewer than the limit itself: counted per process, it would have let this guess in.
    for worker in (b, a):
        locked = _login(worker, PASSWORD)
        assert locked.status_code == 429 and LOCKED in locked.text
        assert "verdicts_editor" not in locked.headers.get("set-cookie", "")


def test_a_session_made_on_one_worker_works_on_the_other_and_logging_out_ends_it_everywhere(serve):
    server = serve()
    a, b = two_workers(server)
    assert _login(a, PASSWORD).status_code == 303
    b.http.cookies = a.http.cookies  # the same browser, its next request served by the other process
    page = b.get("/editor")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert b.post("/editor/logout", data={"csrf": csrf}).status_code == 303
    # a still holds the cookie (a copy, as anyone who saw it would): the server has ended the session.
    assert a.http.cookies.get("verdicts_editor")
    assert a.get("/editor").status_code == 303
    assert a.post("/editor/build", data={"csrf": csrf}).status_code == 403


def test_the_per_address_limit_holds_across_workers_sequential_and_parallel(serve):
    server = serve(SIGNUP_LIMIT_PER_IP="1000")  # the per-address limit is the one under test
    limit = server.settings.signup_limit_per_address
    a, b = two_workers(server)
    for i in range(2 * limit + 1):
        assert "Check your inbox" in _sign_up((a, b)[i % 2], "victim@example.com").text
    assert len(settled_outbox(server.settings)) == limit
    # A flood on new connections, landing wherever the kernel puts them.
    with ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(f"{server.base}/subscribe", data={"email": "flood@example.com"}, timeout=30),
                range(24),
            )
        )
    assert {r.status_code for r in answers} == {303}  # each one redirected to "check your inbox", none refused
    emailed = [m for m in settled_outbox(server.settings) if m["To"].addresses[0].addr_spec == "flood@example.com"]
    assert 1 <= len(emailed) <= limit


def test_by_default_a_forwarded_for_from_loopback_changes_nothing(serve):
    server = serve(SIGNUP_LIMIT_PER_IP="3")
    a, b = two_workers(server)
    spoof = [{"X-Forwarded-For": f"203.0.113.{i}", "X-Forwarded-Proto": "https"} for i in range(10)]
    codes = [_sign_up((a, b)[i % 2], f"r{i}@example.com", spoof[i]).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    assert _consent_ips(server.settings) == ["127.0.0.1"] * 3
    for i in range(server.settings.editor_lockout_attempts):
        assert _login((a, b)[i % 2], "wrong", spoof[i]).status_code == 401
    locked = _login(b, PASSWORD, spoof[9])
    assert locked.status_code == 429 and LOCKED in locked.text
    # Nor is the scheme believed: http stays http (no HSTS, no Secure cookie).
    assert "strict-transport-security" not in locked.headers
    assert "; secure" not in _cookie(locked, "verdicts_login").lower()


def test_behind_a_trusted_proxy_the_forwarded_address_is_limited_and_recorded(serve):
    server = serve(SIGNUP_LIMIT_PER_IP="3", TRUSTED_PROXIES="127.0.0.1")
    a, b = two_workers(server)
    # What nginx sends on: the client's own (forged) header, then the address it connected from.
    via = lambda client: {"X-Forwarded-For": f"198.51.100.66, {client}"}  # noqa: E731
    codes = [_sign_up((a, b)[i % 2], f"r{i}@example.com", via("203.0.113.7")).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    assert _sign_up(a, "other@example.com", via("203.0.113.8")).status_code == 200
    assert _consent_ips(server.settings) == ["203.0.113.7"] * 3 + ["203.0.113.8"]
    for i in range(server.settings.editor_lockout_attempts):
        assert _login((a, b)[i % 2], "wrong", via("203.0.113.7")).status_code == 401
    assert _login(a, PASSWORD, via("203.0.113.7")).status_code == 429
    # Another editor behind the same proxy is not locked out with the attacker.
    assert _login(b, PASSWORD, via("203.0.113.8")).status_code == 303
    # https as the proxy says: HSTS, and Secure cookies.
    page = a.get("/editor/login", headers={**via("203.0.113.8"), "X-Forwarded-Proto": "https"})
    assert "strict-transport-security" in page.headers and "; secure" in _cookie(page, "verdicts_login").lower()
