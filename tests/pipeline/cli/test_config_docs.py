"""`verdicts config docs`: docs/configuration.md is the settings model, generated, never a copy that drifts."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.cli.config import GROUPS, configuration_page
from pipeline.config import Settings
from pipeline.secret_key import DEV_SECRET_KEY

ROOT = Path(__file__).resolve().parents[3]
ROW = re.compile(r"^\| `VERDICTS_(\w+)` \| (.*?) \| (.*) \|$")


def test_configuration_doc_is_the_settings_model_as_generated(verdicts):
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == configuration_page(), "out of date: run `verdicts config docs > docs/configuration.md`"
    assert verdicts("config", "docs").out == committed


def test_every_setting_appears_once_in_declaration_order_under_its_group():
    page = configuration_page()
    listed = [m.group(1).lower() for line in page.splitlines() if (m := ROW.match(line))]
    assert listed == list(Settings.model_fields)
    # A group named after a setting that was renamed or removed would silently swallow its neighbours.
    assert set(GROUPS) <= set(Settings.model_fields)
    assert next(iter(Settings.model_fields)) in GROUPS, "the first settings would have no heading"
    headings = [line.removeprefix("## ") for line in page.splitlines() if line.startswith("## ")]
    assert headings == [title for title, _ in GROUPS.values()]


def test_a_row_says_the_default_the_bounds_and_the_choices_and_never_a_secret():
    page = configuration_page()
    rows = {m.group(1): (m.group(2), m.group(3)) for line in page.splitlines() if (m := ROW.match(line))}
    assert rows["MAX_COMPARISONS"] == ("`5`", "Comparisons in one issue; the rest are linked. At least 1, at most 50.")
    assert rows["AFTER_CRASH"][0] == "`resend`" and rows["AFTER_CRASH"][1].endswith("One of resend, hold.")
    assert rows["REQUIRE_APPROVAL"][0] == "`true`"
    assert rows["FALLBACK_PROVIDER"][0] == "*unset*"
    assert rows["SECRET_KEY"][0] == "*a development value*" and DEV_SECRET_KEY not in page
