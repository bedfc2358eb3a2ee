"""The editor's growth page: the embed snippet per comparison, sign-ups per source per week with how many
confirmed, and the top referrers, masked."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlmodel import select

from pipeline.store.db import session_scope
from pipeline.store.models import Comparison, utcnow
from subscribers.consent import Evidence
from subscribers.models import ConsentRecord
from subscribers.service import add_subscriber, confirm, sign_up
from tests.conftest import editor_site
from tests.pipeline.web.test_editor import _client, login


def _cells(html: str, source: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(source)}</td>(.*?)</tr>", html)
    assert row, f"no row for {source}"
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_growth_page_counts_signups_per_source_per_week_and_the_top_referrers(workdir, monkeypatch):
    settings, _ = editor_site(workdir, monkeypatch, EMBED_ORIGINS="https://verdicts.example.com")
    with session_scope(settings.database_url) as session:
        fan = add_subscriber(session, "fan@example.com", confirmed=True).subscriber
        session.flush()
        for i in range(3):  # three from one comparison this week, two of whom confirm
            row = sign_up(session, f"c{i}@example.com", None, Evidence("embed", page="cmp-0", referrer_id=fan.id))
            if i < 2:
                confirm(session, row.subscriber.id, Evidence("email"))
        sign_up(session, "u@example.com", None, Evidence("api", utm={"utm_source": "x.com"}))
        sign_up(session, "old@example.com", None, Evidence("form", page="cmp-0"))
        session.flush()
        old = session.exec(select(ConsentRecord).where(ConsentRecord.email == "old@example.com")).one()
        old.at = utcnow() - timedelta(weeks=3)  # three weeks ago: its own column
        ancient = sign_up(session, "ancient@example.com", None, Evidence("form", page="cmp-0")).subscriber
        session.flush()
        for record in session.exec(select(ConsentRecord).where(ConsentRecord.subscriber_id == ancient.id)):
            record.at = utcnow() - timedelta(weeks=9)  # before the table's weeks: not counted
        slug = session.exec(select(Comparison)).first().slug
    client = _client(settings)
    assert client.get("/editor/growth").status_code == 303  # editors only
    login(client)
    assert 'href="/editor/growth"' in client.get("/editor").text
    page = client.get(f"/editor/growth?comparison={slug}")
    assert page.status_code == 200
    assert _cells(page.text, "cmp-0")[-1] == "3 / 2" and _cells(page.text, "cmp-0")[-4] == "1 / 0"
    assert sum(cell != "0 / 0" for cell in _cells(page.text, "cmp-0")) == 2
    assert _cells(page.text, "utm_source=x.com")[-1] == "1 / 0"
    assert "<td>f***@example.com</td><td>2</td>" in page.text and "fan@example.com" not in page.text
    snippet = f"&lt;iframe src=&#34;http://testserver/embed/subscribe?source={slug}&#34;"
    assert snippet.replace("http://testserver", settings.base_url) in page.text
    assert "loading=&#34;lazy&#34;" in page.text and "may frame the form" in page.text
