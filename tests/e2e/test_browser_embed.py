"""The embedded sign-up form and the API as another site uses them, in real chromium: pages served from other
loopback origins (other ports) frame /embed/subscribe and fetch() /api/v1/subscribe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import select

from subscribers.lookup import find_subscriber, get_by_email
from subscribers.models import ConsentRecord
from tests.conftest import settled_outbox

PAGE = """<!doctype html><html><head><title>A comparison</title></head><body>
<h1>Cursor vs Zed</h1>
<iframe id="signup" src="{src}" title="Subscribe" width="360" height="260" loading="lazy"></iframe>
</body></html>"""


class Site:
    """A partner's site on its own loopback port: one page that frames our form."""

    def __init__(self) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.html = "<!doctype html><title>blank</title>"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def partners(workdir, monkeypatch) -> Iterator[tuple[Site, Site]]:
    """Two other origins: the first is in VERDICTS_EMBED_ORIGINS, the second is not. Before ``live_server``."""
    listed, stranger = Site(), Site()
    monkeypatch.setenv("VERDICTS_EMBED_ORIGINS", listed.origin)
    yield listed, stranger
    listed.close()
    stranger.close()


def _records(settings, email: str) -> list[ConsentRecord]:
    from pipeline.store.db import session_scope

    with session_scope(settings.database_url) as session:
        sub = get_by_email(session, email)
        return list(session.exec(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id)).all())


def test_a_listed_site_frames_the_form_and_signs_a_reader_up_inside_the_frame(partners, live_server, browser):
    listed, _ = partners
    base, settings = live_server
    listed.html = PAGE.format(
        src=f"{base}/embed/subscribe?source=cursor-vs-zed&amp;utm_source=partner&amp;utm_campaign=w48"
    )
    page = browser.new_page(viewport={"width": 420, "height": 600})
    page.goto(listed.origin)
    frame = page.frame_locator("#signup")
    frame.locator("input[name=email]").fill("framed@example.com")
    frame.locator("input[name=name]").fill("Fay")
    frame.locator("button[type=submit]").click()
    frame.locator("text=Check your inbox").wait_for()
    assert page.url.rstrip("/") == listed.origin  # the reader never left the partner's page
    [mail] = settled_outbox(settings)
    assert mail["To"].addresses[0].addr_spec == "framed@example.com"
    [record] = _records(settings, "framed@example.com")
    assert (record.source, record.page) == ("embed", "cursor-vs-zed")
    assert record.utm == {"utm_source": "partner", "utm_campaign": "w48"}


def test_a_site_not_listed_cannot_frame_the_form(partners, live_server, browser):
    _, stranger = partners
    base, _ = live_server
    stranger.html = PAGE.format(src=f"{base}/embed/subscribe")
    page = browser.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "frame-ancestors" in m.text else None)
    page.goto(stranger.origin)
    page.wait_for_timeout(500)
    frame = next(f for f in page.frames if f is not page.main_frame)
    assert frame.locator("input[name=email]").count() == 0  # chromium shows its error page instead
    assert blocked, "chromium did not report the frame-ancestors refusal"
    # The same page of ours, framed by itself, still works: the refusal is the other origin's.
    own = browser.new_page()
    own.goto(f"{base}/embed/subscribe")
    assert own.locator("input[name=email]").count() == 1


FETCH = """async ([url, body]) => {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body});
  return [r.status, await r.text()];
}"""


def test_a_listed_site_calls_the_api_with_fetch_and_a_stranger_cannot_read_the_answer(partners, live_server, browser):
    listed, stranger = partners
    base, settings = live_server
    page = browser.new_page()
    page.goto(listed.origin)
    body = '{"email": "fetched@example.com", "source": "cursor-vs-zed", "utm_medium": "widget"}'
    status, text = page.evaluate(FETCH, [f"{base}/api/v1/subscribe", body])  # a preflight first (JSON body)
    assert status == 202 and '"accepted"' in text
    settled_outbox(settings)
    [record] = _records(settings, "fetched@example.com")
    assert (record.source, record.page, record.utm) == ("api", "cursor-vs-zed", {"utm_medium": "widget"})
    other = browser.new_page()
    other.goto(stranger.origin)
    refused = other.evaluate(
        """async (url) => { try { await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
           body: '{"email": "x@example.com"}'}); return "read"; } catch (e) { return "blocked"; } }""",
        f"{base}/api/v1/subscribe",
    )
    assert refused == "blocked"
    from pipeline.store.db import session_scope

    with session_scope(settings.database_url) as session:
        assert find_subscriber(session, "x@example.com") is None  # the preflight failed: nothing was sent at all
