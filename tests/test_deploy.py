"""What an operator installs from deploy/: the systemd units load without a warning and keep their sandbox, the
user and folders they need are created, and the nginx site passes `nginx -t` and, in front of a real
`verdicts serve` started as the unit starts it, redirects to HTTPS, forwards the client's address and scheme (never
a client's own X-Forwarded-* headers) and refuses bodies over the app's limits."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.errors import EXIT_CONFIGURATION
from tests.conftest import POSTGRES, settled

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SYSTEMD = DEPLOY / "systemd"
SITE = DEPLOY / "nginx" / "verdicts.conf"
SERVICES = sorted(SYSTEMD.glob("verdicts-*.service"))
#: Where the units expect the virtualenv (deploy/README.md installs it there).
PROGRAM = "/opt/verdicts/venv/bin/verdicts"
#: The `verdicts` of the virtualenv running the tests.
VERDICTS = str(Path(sys.executable).parent / "verdicts")
HOST = "verdicts.example.com"


def tool(name: str) -> str:
    """A system tool the deploy files are checked with: .ci/run installs them, so in CI a missing one fails."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found:
        return found
    if os.environ.get("VERDICTS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{name} not found: .ci/run installs it with apt-get")
    package = "systemd" if name.startswith("systemd") else name
    pytest.skip(f"{name} is not installed (Debian: apt-get install -y {package})")


def settings_of(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, values in order (a key may repeat, e.g. SystemCallFilter)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


# --- systemd ----------------------------------------------------------------------------------


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as installed, but with ExecStart's program at a real file here: `verify` checks it exists."""
    program = tmp_path / "venv" / "bin" / "verdicts"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    folder = tmp_path / "system"
    folder.mkdir()
    for unit in [*SERVICES, *SYSTEMD.glob("verdicts-*.timer")]:
        text = unit.read_text()
        assert unit.suffix == ".timer" or PROGRAM in text, f"{unit.name} does not run {PROGRAM}"
        (folder / unit.name).write_text(text.replace(PROGRAM, str(program)))
    return folder


def verify(folder: Path) -> tuple[int, str]:
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", *sorted(p.name for p in folder.iterdir())],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def test_the_units_load_without_a_single_warning(units):
    code, output = verify(units)
    # `verify` exits 0 on a misspelt setting or a value it cannot parse, and then ignores it: any output is a failure.
    assert (code, output) == (0, "")


@pytest.mark.parametrize(
    "good, broken",
    [
        ("ProtectSystem=strict", "ProtectSystm=strict"),  # a misspelt key: the sandbox would silently go
        ("ProtectSystem=strict", "ProtectSystem=stric"),  # a value systemd cannot parse, also ignored
        ("RestrictAddressFamilies=AF_INET ", "RestrictAddressFamilies=AF_INTE "),
        ("bin/verdicts serve", "bin/verdict serve"),  # a program that is not there
        ("Type=exec", "Type=exe"),
        ("After=network-online.target", "After=network-online.target\nRequires=verdicts-setup.service"),  # not there
    ],
)
def test_a_broken_unit_fails_the_check(units, good, broken):
    web = units / "verdicts-web.service"
    assert good in web.read_text()
    web.write_text(web.read_text().replace(good, broken, 1))
    code, output = verify(units)
    assert code != 0 or output
    assert "verdicts-web.service" in output


def test_every_service_runs_as_verdicts_in_the_same_sandbox_with_a_low_exposure(units):
    sandboxes = {}
    for unit in SERVICES:
        found = settings_of(unit)
        assert found["User"] == ["verdicts"] and found["EnvironmentFile"] == ["/etc/verdicts/verdicts.env"], unit.name
        assert found["WorkingDirectory"] == ["/var/lib/verdicts"] and found["StateDirectory"] == ["verdicts"], unit.name
        text = unit.read_text()
        sandboxes[unit.name] = text[text.index("\nStateDirectory=") : text.index("\nSystemCallErrorNumber=")]
        result = subprocess.run(
            [tool("systemd-analyze"), "security", "--offline=true", "--man=no", "--threshold=15", unit.name],
            cwd=units,
            capture_output=True,
            text=True,
            timeout=60,
        )
        exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
        # 1.1 today (10 is a unit without any sandbox); --threshold=15 fails above 1.5.
        assert result.returncode == 0 and exposure and float(exposure.group(1)) <= 1.5, result.stdout[-300:]
    assert len(set(sandboxes.values())) == 1, "the services' sandboxes differ: keep them the same"
    for key in (
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "MemoryDenyWriteExecute",
    ):
        assert f"\n{key}=" in sandboxes["verdicts-web.service"], key
    for unit in ("verdicts-web.service", "verdicts-scheduler.service"):  # restarted after a crash, not a bad setting
        found = settings_of(SYSTEMD / unit)
        assert found["Restart"] == ["on-failure"] and found["RestartPreventExitStatus"] == [str(EXIT_CONFIGURATION)]
    scheduler = settings_of(SYSTEMD / "verdicts-scheduler.service")
    # The batch in flight is finished on SIGTERM: one provider request with its retries (150 s at the defaults) fits.
    assert scheduler["KillSignal"] == ["SIGTERM"] and scheduler["TimeoutStopSec"] == ["5min"]


@pytest.mark.skipif(
    bool(POSTGRES), reason="the backup unit is SQLite's; tests/pipeline/store/test_backup.py checks pg_dump"
)
def test_the_backup_units_command_keeps_one_checked_copy_per_weekday(settings, tmp_path):
    argv = command("verdicts-backup.service")
    assert argv[-1].count("/var/backups/verdicts/") == 1
    argv[-1] = argv[-1].replace("/var/backups/verdicts/", f"{tmp_path}/")
    unit_env = settings_of(SYSTEMD / "verdicts-backup.service")["Environment"]
    env = {**os.environ, **dict(v.split("=", 1) for v in unit_env)}
    for _night in (1, 2):  # the same weekday a week later replaces it
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "integrity check ok" in result.stdout, result.stderr
    [copy] = tmp_path.glob("verdicts-*.db")
    assert copy.name == f"verdicts-{dt.date.today():%A}.db" and copy.stat().st_mode & 0o777 == 0o600


def test_the_user_and_folders_are_created_as_the_units_expect(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles sets owners: it needs root (CI runs as root)")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(
        [tool("systemd-sysusers"), f"--root={root}", str(SYSTEMD / "verdicts.sysusers")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [tool("systemd-tmpfiles"), "--create", f"--root={root}", str(SYSTEMD / "verdicts.tmpfiles")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = (root / "etc/passwd").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("verdicts:"))
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert uid != 0 and home == "/var/lib/verdicts" and shell.endswith("nologin")
    config, backups = (root / "etc/verdicts").stat(), (root / "var/backups/verdicts").stat()
    # Secrets: root writes them, the services read them.
    assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, gid, 0o750)
    assert (backups.st_uid, backups.st_mode & 0o777) == (uid, 0o700)
    backup = settings_of(SYSTEMD / "verdicts-backup.service")
    assert backup["ReadWritePaths"] == ["/var/backups/verdicts"]


# --- nginx ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for the site's name and 127.0.0.1, laid out as Let's Encrypt lays it out."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path / "letsencrypt" / "live" / HOST
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


def replaced(text: str, old: str, new: str) -> str:
    """``old`` replaced by ``new``, which must be there: a site that changed shape fails here, not silently passes."""
    assert old in text, f"{old!r} is no longer in {SITE.name}: update the test"
    return text.replace(old, new)


def site_text(certificate: Path, *, app_port: int = 8000, http_port: int = 80, https_port: int = 443) -> str:
    """The site with its certificate, ports and upstream rewritten for a test on loopback."""
    site = SITE.read_text()
    site = replaced(site, f"/etc/letsencrypt/live/{HOST}/", f"{certificate}/")
    site = replaced(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};")
    site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)  # a CI container may have no IPv6
    site = replaced(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    return replaced(site, "listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")


def temp_paths(folder: Path) -> str:
    """nginx's temporary folders in ``folder``: the compiled-in ones are root's."""
    folder.mkdir(exist_ok=True)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    return "".join(f"{kind}_temp_path {folder}/{kind};\n" for kind in kinds)


def nginx_config(tmp_path: Path, certificate: Path, **ports: int) -> Path:
    """An nginx.conf that includes the site and keeps its pid, logs and temporary files in ``tmp_path``, so nginx
    runs as the current user."""
    (tmp_path / "site.conf").write_text(site_text(certificate, **ports))
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/nginx-error.log;
        events {{}}
        http {{
            access_log off;
            {temp_paths(tmp_path / "nginx-temp")}
            include {tmp_path}/site.conf;
        }}
    """)
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("nginx"), "-t", "-p", f"{conf.parent}/", "-e", f"{conf.parent}/nginx-error.log", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_site_passes_nginx_t(tmp_path, certificate):
    result = nginx_test(nginx_config(tmp_path, certificate))
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


def test_the_site_fits_in_debians_own_nginx_conf_beside_its_default_site(tmp_path, certificate):
    """Installed as deploy/README.md says: in sites-enabled/, inside the http block of the package's nginx.conf."""
    tool("nginx")
    if not Path("/etc/nginx/nginx.conf").is_file():
        pytest.skip("this nginx is not Debian's package (no /etc/nginx/nginx.conf)")
    etc = tmp_path / "etc-nginx"
    shutil.copytree("/etc/nginx", etc)  # the default site's link is followed: its text is copied
    conf = etc / "nginx.conf"
    conf.write_text(
        conf.read_text()
        .replace("/etc/nginx/", f"{etc}/")
        .replace("/run/nginx.pid", f"{tmp_path}/nginx.pid")
        .replace("/var/log/nginx/", f"{tmp_path}/")
    )
    (etc / "conf.d" / "temp-paths.conf").write_text(temp_paths(tmp_path / "nginx-temp"))
    (etc / "sites-enabled" / "verdicts.conf").write_text(site_text(certificate))
    result = nginx_test(conf)
    assert result.returncode == 0 and "[emerg]" not in result.stderr, result.stderr


def test_a_broken_site_fails_nginx_t(tmp_path, certificate):
    conf = nginx_config(tmp_path, certificate)
    site = tmp_path / "site.conf"
    site.write_text(site.read_text().replace("client_max_body_size 5m;", "client_max_body_size 5 m;"))
    result = nginx_test(conf)
    assert result.returncode != 0 and "client_max_body_size" in result.stderr


def start_nginx(tmp_path: Path, conf: Path) -> subprocess.Popen:
    """nginx in the foreground on ``conf``, its prefix and error log in ``tmp_path`` (stop it with ``stop``)."""
    logs = ["-p", f"{tmp_path}/", "-e", f"{tmp_path}/nginx-error.log"]
    argv = [tool("nginx"), *logs, "-c", str(conf), "-g", "daemon off;"]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, start_new_session=True)


def wait_until(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up within {seconds:g} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def command(unit: str, key: str = "ExecStart") -> list[str]:
    """A unit's command as systemd runs it (``$$`` and ``%%`` are its escapes), from this virtualenv."""
    argv = shlex.split(settings_of(SYSTEMD / unit)[key][0].replace("$$", "$").replace("%%", "%"))
    return [arg.replace(PROGRAM, VERDICTS) for arg in argv]


@pytest.fixture
def proxied_site(workdir, tmp_path, certificate):
    """The web unit's own commands (only the port changed): `verdicts init` on a new database, then `verdicts serve`,
    with nginx in front: yields the app's, nginx's HTTP and HTTPS ports."""
    app_port, http_port, https_port = free_port(), free_port(), free_port()
    argv = command("verdicts-web.service")
    assert argv[argv.index("--port") + 1] == "8000"
    argv[argv.index("--port") + 1] = str(app_port)
    # An http BASE_URL: only a request the app believes came over https (nginx's X-Forwarded-Proto) gets HSTS.
    env = {
        **os.environ,
        "VERDICTS_TRUSTED_PROXIES": "127.0.0.1",
        "VERDICTS_BASE_URL": f"http://{HOST}",
        "VERDICTS_SECRET_KEY": "a-long-random-secret-for-this-test-only-0123456789",
    }
    init = subprocess.run(
        command("verdicts-web.service", "ExecStartPre"), env=env, capture_output=True, text=True, timeout=120
    )
    assert init.returncode == 0 and "Database ready" in init.stdout, init.stderr
    log = (tmp_path / "serve.log").open("w")
    app = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    conf = nginx_config(tmp_path, certificate, app_port=app_port, http_port=http_port, https_port=https_port)
    proxy = start_nginx(tmp_path, conf)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{app_port}/healthz").status_code == 200, "verdicts serve")
        wait_until(lambda: socket.create_connection(("127.0.0.1", https_port), timeout=1).close() is None, "nginx")
        yield app_port, http_port, https_port
    finally:
        stop(proxy)
        stop(app)
        log.close()
    assert app.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]  # SIGTERM is a clean stop


def test_nginx_in_front_of_verdicts_serve_forwards_the_client_and_keeps_the_limits(proxied_site, certificate):
    from pipeline.config import get_settings
    from pipeline.store.db import session_scope
    from subscribers.lookup import consent_trail, find_subscriber

    app_port, http_port, https_port = proxied_site
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as plain:
        moved = plain.get("/subscribe?from=email", headers={"Host": HOST})
    assert moved.status_code == 301 and moved.headers["location"] == f"https://{HOST}/subscribe?from=email"
    assert moved.headers["server"] == "nginx"  # no version

    tls = ssl.create_default_context(cafile=str(certificate / "fullchain.pem"))
    # From 127.0.0.2, another loopback address: the app must record that one, not nginx's 127.0.0.1 nor a forged one.
    transport = httpx.HTTPTransport(verify=tls, local_address="127.0.0.2")
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"}  # must not reach the app
    with httpx.Client(base_url=f"https://127.0.0.1:{https_port}", transport=transport) as http:
        health = http.get("/healthz", headers=forged)
        assert health.status_code == 200 and health.json()["database"] == "ok"
        assert "max-age" in health.headers.get("strict-transport-security", "")  # X-Forwarded-Proto: https believed
        signed_up = http.post(
            "/subscribe", data={"email": "proxied@example.com", "name": "Pat"}, headers=forged, follow_redirects=True
        )
        assert signed_up.status_code == 200 and "Check your inbox" in signed_up.text

        too_large = http.post(
            "/subscribe",
            content=b"email=" + b"x" * (256 * 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert too_large.status_code == 413 and "content-security-policy" not in too_large.headers  # nginx's, unread
        webhook = http.post("/webhooks/postmark", content=b"{" + b" " * (1024 * 1024) + b"}")
        assert webhook.status_code != 413  # a 1 MB webhook reaches the app (which refuses its missing credentials)
        assert http.post("/webhooks/postmark", content=b" " * (5 * 1024 * 1024 + 1)).status_code == 413

    def trail() -> list:  # the sign-up is carried out after its answer
        with session_scope(get_settings().database_url) as session:
            found = find_subscriber(session, "proxied@example.com")
            return [] if found is None else consent_trail(session, found)

    [record] = settled(trail)
    assert record.ip == "127.0.0.2"
    # The same forged headers straight to the app, from an address it does not trust, are ignored.
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", transport=untrusted) as direct:
        assert "strict-transport-security" not in direct.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers


@pytest.fixture
def echo_port():
    """A backend that answers every request with the headers it received, as JSON."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_site_replaces_a_clients_forwarded_headers_with_its_own(tmp_path, certificate, echo_port):
    """Exactly what the app receives: one address (never a client's list with ours appended) and the scheme."""
    https_port = free_port()
    conf = nginx_config(tmp_path, certificate, app_port=echo_port, http_port=free_port(), https_port=https_port)
    proxy = start_nginx(tmp_path, conf)
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", https_port), timeout=1).close() is None, "nginx")
        tls = ssl.create_default_context(cafile=str(certificate / "fullchain.pem"))
        with httpx.Client(transport=httpx.HTTPTransport(verify=tls, local_address="127.0.0.2")) as http:
            seen = http.get(
                f"https://127.0.0.1:{https_port}/issues",
                headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"},
            ).json()
    finally:
        stop(proxy)
    assert (seen["x-forwarded-for"], seen["x-forwarded-proto"]) == ("127.0.0.2", "https")
