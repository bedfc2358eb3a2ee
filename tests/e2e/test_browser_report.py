"""The issue's report in real chromium: reached from the issue page, its tables, the note that opens are not
tracked, the trend chart served as SVG (loaded as an image, no script anywhere), and the exports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope
from tests.conftest import seed_issue
from tests.e2e.conftest import shot

PASSWORD = "editor-password-for-tests"


def test_the_report_page_in_a_real_browser(workdir, monkeypatch, request, browser):
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", PASSWORD)
    monkeypatch.setenv("VERDICTS_EDITOR_EMAILS", "ed@verdicts.example.com")
    base, settings = request.getfixturevalue("live_server")
    with session_scope(settings.database_url) as session:
        issue_id = seed_issue(session, workdir, readers=3).id
    send_issue(settings, issue_id, OutboxProvider(settings))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    # The site has no favicon: chromium's own request for one is a 404 on every page, not this page's.
    page.on(
        "console",
        lambda m: (
            None
            if m.type not in ("error", "warning") or m.location.get("url", "").endswith("/favicon.ico")
            else problems.append(m.text)
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{base}/editor/issues/{issue_id}/report")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
    page.goto(f"{base}/editor/issues/{issue_id}")
    page.click("[data-testid=report-link]")
    page.wait_for_load_state("networkidle")

    assert page.url.endswith(f"/editor/issues/{issue_id}/report")
    assert "Opens are not tracked" in page.inner_text("[data-testid=untracked]")
    total = page.locator("#delivery tr.total")
    assert total.locator("th").text_content() == "All providers" and total.locator("td").first.text_content() == "3"
    assert page.locator("#votes tbody tr").count() == 6 and page.locator("#clicks tbody tr").count() == 3
    assert page.evaluate("document.querySelector('figure img').naturalWidth") == 640  # the SVG loaded
    assert page.locator("#trend tbody tr").count() == 1 and page.locator("script").count() == 0
    shot(page, "editor-report")

    csv_text, json_text = (_download(page, f"a[href$='/report.{kind}']") for kind in ("csv", "json"))
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert {"section": "delivery", "name": "all", "measure": "sent", "value": "3"} in rows
    data = json.loads(json_text)
    assert data["total"]["sent"] == 3 and data["opens"] == "not tracked"
    assert not problems, problems


def _download(page, link: str) -> str:
    """What clicking one of the page's export links downloads."""
    with page.expect_download() as download:
        page.click(link)
    return Path(download.value.path()).read_text()
