"""The lean loopback fake of the scale benchmark: it reads each request whole and counts its
messages without parsing them, so the send, not the fake, is what a run measures."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _message_ids(n: int) -> list[str]:
    """A random id per message, shaped like Postmark's UUIDs: the ledger stores and indexes each one,
    so they must not repeat. One read of the random source per request, not one per message
    (``uuid4`` added a tenth to the fake's cost per message, in the ceiling and the send alike)."""
    raw = os.urandom(16 * n).hex()
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in (raw[32 * i : 32 * i + 32] for i in range(n))]


class LeanFake:
    """Reads each request whole, counts its messages cheaply, answers like the provider."""

    def __init__(self, shape: str) -> None:
        self.shape, self.accepted, self.lock = shape, 0, threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fake.shape == "postmark":
                    n = body.count(b'"MessageStream"')
                    answer = json.dumps(
                        [{"ErrorCode": 0, "Message": "OK", "MessageID": i} for i in _message_ids(n)]
                    ).encode()
                else:
                    start = body.index(b'name="to"\r\n\r\n')
                    n = body.count(b",", start, body.index(b"\r\n--", start)) + 1
                    answer = b'{"id":"<bench@mg.example.com>","message":"Queued. Thank you."}'
                with fake.lock:
                    fake.accepted += n
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
