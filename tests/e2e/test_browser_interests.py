"""A reader picks interests on the preferences page in a real browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import httpx

from pipeline.email.render import reader_url
from pipeline.store.db import session_scope
from subscribers.lookup import get_by_email
from subscribers.tokens import PREFERENCES
from tests.conftest import db_snapshot
from tests.e2e.conftest import shot
from tests.lineup_seed import lineup_issue


def test_a_reader_picks_interests_and_only_those_in_a_real_browser(live_server, browser, workdir):
    base, settings = live_server
    lineup_issue(settings, workdir, readers=1)  # reader0: no interests yet
    with session_scope(settings.database_url) as session:
        reader_id = get_by_email(session, "reader0@example.com").id
    preferences = reader_url(settings, PREFERENCES, reader_id)
    page = browser.new_page(viewport={"width": 390, "height": 800})
    page.goto(preferences)
    labels = page.locator("section[aria-labelledby=interests-heading] fieldset label").all_inner_texts()
    assert labels == ["Audio", "Coding", "Images", "Writing"]  # every category a comparison used
    assert not page.is_checked("#only-interests")
    page.check("text=Images")
    page.check("text=Writing")
    page.check("#only-interests")
    page.click("text=Save interests")
    page.wait_for_url(f"{preferences}?notice=interests")
    assert page.locator("[role=status]").inner_text() == "Saved: your next issue follows your interests."
    shot(page, "preferences-interests")
    page.goto(preferences)  # reloaded: what was saved, and no notice any more
    assert page.is_checked("text=Images") and page.is_checked("text=Writing") and page.is_checked("#only-interests")
    assert not page.is_checked("text=Coding") and page.locator("[role=status]").count() == 0
    with session_scope(settings.database_url) as session:
        reader = get_by_email(session, "reader0@example.com")
        assert (reader.interests, reader.only_interests) == (["Images", "Writing"], True)
    # Unticking everything is "everything" again; "only" alone means nothing.
    for name in ("Images", "Writing"):
        page.uncheck(f"text={name}")
    page.click("text=Save interests")
    page.wait_for_url(f"{preferences}?notice=interests")
    with session_scope(settings.database_url) as session:
        reader = get_by_email(session, "reader0@example.com")
        assert (reader.interests, reader.only_interests) == ([], False)


def test_a_category_that_does_not_exist_is_refused_and_changes_nothing(live_server, workdir):
    base, settings = live_server
    lineup_issue(settings, workdir, readers=1)
    with session_scope(settings.database_url) as session:
        reader_id = get_by_email(session, "reader0@example.com").id
    preferences = reader_url(settings, PREFERENCES, reader_id)
    before = db_snapshot(settings.database_url)
    answer = httpx.post(f"{preferences}/interests", data={"interests": ["Coding", "Crypto<b>"], "only": "yes"})
    assert answer.status_code == 422
    assert "&#39;Crypto&lt;b&gt;&#39; is not a category" in answer.text and "Nothing was changed" in answer.text
    assert "Audio, Coding, Images, Writing" in answer.text  # the fix: the choices
    assert db_snapshot(settings.database_url) == before
    forged = httpx.post(f"{base}/preferences/not-a-token/interests", data={"interests": ["Coding"]})
    assert forged.status_code == 400 and db_snapshot(settings.database_url) == before
