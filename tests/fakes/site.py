"""A site that receives our webhooks on loopback: answers 503 until told otherwise, records every request, and
checks each signature with the documented scheme (HMAC-SHA256 over ``<timestamp>.<body>``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def closed_port() -> int:
    """A loopback port nothing listens on: a site that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    def __init__(self, secret: str, failures: int = 0) -> None:
        self.secret, self.failures = secret, failures
        self.requests: list[tuple[int, dict[str, str], bytes]] = []  # (status answered, headers, body)
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with site.lock:
                    status = 503 if site.failures > 0 else 200
                    site.failures -= 1
                    site.requests.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def signed(self, headers: dict[str, str], body: bytes) -> bool:
        mac = hmac.new(self.secret.encode(), headers["X-Verdicts-Timestamp"].encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest(headers["X-Verdicts-Signature"], "sha256=" + mac.hexdigest())

    def accepted(self) -> list[dict]:
        """The envelopes answered 200, in arrival order, each with a valid signature (else this fails)."""
        with self.lock:
            done = [(h, b) for status, h, b in self.requests if status == 200]
        assert all(self.signed(h, b) for h, b in done), "a request with a bad signature"
        return [json.loads(b) for _, b in done]
