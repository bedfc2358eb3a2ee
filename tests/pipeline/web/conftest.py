"""Fixtures the web tests share (a fixture imported into a test module shadows its own name: F811)."""

from __future__ import annotations

import pytest

from tests.conftest import editor_site


@pytest.fixture
def editor_env(workdir, monkeypatch):
    """A site with two editors, three readers and one built issue: the settings and the issue's id."""
    return editor_site(workdir, monkeypatch, readers=3, editors="ed@verdicts.example.com, chief@verdicts.example.com")
