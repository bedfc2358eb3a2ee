"""The editor previews any reader's line-up of an issue."""

from __future__ import annotations

import re

from pipeline.config import get_settings
from pipeline.store.db import upgrade
from tests.conftest import EDITOR_PASSWORD
from tests.lineup_seed import lineup_issue
from tests.pipeline.web.test_editor import _client, login


def _order(html: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'href="https://verdicts\.example\.com/compare/([\w-]+)"', html)))


def test_the_editor_previews_the_line_up_of_any_choice_of_interests(workdir, monkeypatch):
    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", EDITOR_PASSWORD)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    issue, _ = lineup_issue(settings, workdir, readers=1)
    preview = f"/editor/issues/{issue.id}/preview"
    with _client(settings) as client:
        login(client)
        page = client.get(f"/editor/issues/{issue.id}").text
        # The issue's own categories, as a form whose answer opens in the preview frame.
        assert re.findall(r'name="interests" value="([^"]+)"', page) == ["Coding", "Images", "Writing"]
        assert f'action="{preview}" target="email-preview"' in page and 'name="email-preview"' in page
        assert _order(client.get(preview).text) == ["cmp-0", "cmp-1", "cmp-2"]
        first = client.get(preview, params={"interests": ["writing", "Images"]}).text
        assert _order(first) == ["cmp-1", "cmp-2", "cmp-0"] and "come first" in first
        only = client.get(preview, params={"interests": "Images", "only": "1"}).text
        assert _order(only) == ["cmp-2"] and "2 more this week" in only
        assert _order(client.get(preview, params={"interests": "Audio", "only": "1"}).text) == [
            "cmp-0",
            "cmp-1",
            "cmp-2",
        ]  # nothing matches: the whole issue
        bad = client.get(preview, params={"interests": "Crypto"})
        assert bad.status_code == 422 and "&#39;Crypto&#39; is not a category" in bad.text
        assert "tick only the categories the form offers" in bad.text
