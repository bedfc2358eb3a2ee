"""The public archive: the web version of a sent issue, the index and the Atom feed,
never carrying a reader's name, address or token."""

from __future__ import annotations

import html as html_lib
import re
import threading
from xml.etree import ElementTree as ET

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.web import archive
from tests.conftest import outbox_messages, seed_issue


def test_a_sent_issue_has_a_public_web_version_linked_from_every_email(client, session, settings, workdir):
    issue = seed_issue(session, workdir, readers=3)
    assert client.get(f"/issues/{issue.week}").status_code == 404  # not before it goes out
    send_issue(settings, issue.id, OutboxProvider(settings))
    messages = outbox_messages(settings, f"{issue.id}-{issue.week}")
    html = messages[0].get_body(preferencelist=("html",)).get_content()
    text = messages[0].get_body(preferencelist=("plain",)).get_content()
    url = f"{settings.base_url}/issues/{issue.week}"
    assert f'href="{url}"' in html and f"View in browser: {url}" in text
    page = client.get(f"/issues/{issue.week}")
    assert page.status_code == 200 and "Which one should you ship with?" in page.text
    tokens = set(re.findall(r"/(?:unsubscribe|preferences)/([\w.-]+)", html))
    assert tokens and not any(t in page.text for t in tokens)
    for i in range(3):
        assert f"reader{i}@example.com" not in page.text and f"Reader {i}" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    # A visitor never subscribed: the footer invites them to, with no unsubscribe or preferences link.
    assert "You get this email because" in html and "Unsubscribe" in html and "View in browser" in html
    assert "You are reading the web version" in page.text and f'href="{settings.base_url}/subscribe"' in page.text
    assert (
        "You get this email because" not in page.text
        and "Unsubscribe" not in page.text
        and "Preferences" not in page.text
    )
    assert "View in browser" not in page.text
    # Its vote buttons lead to the sign-up page, which says why.
    vote = re.search(r'href="https://[^/"]+(/subscribe\?vote=[^"]+)"', page.text).group(1)
    assert "Voting is for readers" in client.get(html_lib.unescape(vote)).text
    assert "Voting is for readers" not in client.get("/subscribe").text


def test_archive_index_and_atom_feed_list_sent_issues_only(client, session, settings, workdir):
    issue = seed_issue(session, workdir, readers=1)
    assert "No issue has been sent yet" in client.get("/issues").text
    send_issue(settings, issue.id, OutboxProvider(settings))
    index = client.get("/issues")
    assert f'href="/issues/{issue.week}"' in index.text and 'type="application/atom+xml"' in index.text
    feed = client.get("/issues/feed.xml")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ET.fromstring(feed.content)
    [entry] = root.findall("a:entry", ns)
    assert entry.find("a:title", ns).text == issue.subject
    assert entry.find("a:link", ns).get("href") == f"{settings.base_url}/issues/{issue.week}"
    assert root.find("a:updated", ns).text.endswith("Z")


def test_a_stale_web_version_is_rendered_once_while_readers_get_the_one_it_replaces(monkeypatch):
    """After a send everyone opens it at once: when the minute is up, one request renders it again and the
    others are served the page they would have had a moment before, not each a render of their own."""
    pages = archive.RecentPages()
    assert pages.get("w", lambda: "first") == "first"
    monkeypatch.setattr(archive, "FRESH_SECONDS", 0.0)  # the minute has passed
    rendering, release, renders = threading.Event(), threading.Event(), []

    def slow_render() -> str:
        renders.append(1)
        rendering.set()
        release.wait(10)
        return "second"

    renderer = threading.Thread(target=lambda: renders.append(pages.get("w", slow_render)))
    renderer.start()
    assert rendering.wait(10)
    assert [pages.get("w", slow_render) for _ in range(5)] == ["first"] * 5  # none waits, none renders
    release.set()
    renderer.join(10)
    assert renders == [1, "second"] and pages.get("w", lambda: "third") == "third"  # stale again: rendered anew
