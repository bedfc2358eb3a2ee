"""Comparison import: formats, validation that names file/record/field, all-or-nothing, re-import."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.content.importing import list_comparisons, load_files, upsert
from pipeline.content.splits import community_split, panel_split
from pipeline.errors import InvalidInput
from tests.conftest import NOW, comparison, days_ago, db_snapshot, write_json


@pytest.mark.parametrize("shape", ["object", "list", "wrapped"])
def test_json_and_yaml_in_every_shape(tmp_path, shape):
    items = [comparison("one", days_ago(1)), comparison("two", days_ago(2))]
    data = {"object": items[0], "list": items, "wrapped": {"comparisons": items}}[shape]
    write_json(tmp_path / "c.json", data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(data))), encoding="utf-8")
    from_json = load_files([tmp_path / "c.json"])
    from_yaml = load_files([tmp_path / "c.yaml"])
    assert (
        [c.slug for c in from_json]
        == [c.slug for c in from_yaml]
        == [i["slug"] for i in (items[:1] if shape == "object" else items)]
    )


def test_title_defaults_to_tool_names(tmp_path):
    [item] = load_files([write_json(tmp_path / "c.json", comparison("x", days_ago(1)))])
    assert item.title == "Alpha x vs Beta x"


def _bad(tmp_path, mutate, filename="bad.json"):
    good = comparison("good-one", days_ago(1))
    bad = comparison("bad-one", days_ago(1))
    mutate(bad)
    path = write_json(tmp_path / filename, [good, bad])
    with pytest.raises(InvalidInput) as exc:
        load_files([path])
    return str(exc.value)


def test_missing_field_is_named(tmp_path):
    msg = _bad(tmp_path, lambda c: c.pop("url"))
    assert "bad.json: record 2 (bad-one): url: is required" in msg


def test_verdict_must_be_ship_or_skip(tmp_path):
    msg = _bad(tmp_path, lambda c: c["reviews"][0].update(verdict="maybe"))
    assert "record 2 (bad-one): reviews[0].verdict: must be 'ship' or 'skip', not 'maybe'" in msg


def test_review_of_unknown_tool(tmp_path):
    msg = _bad(tmp_path, lambda c: c["reviews"][0].update(tool="gamma"))
    assert "reviews[0].tool" in msg and "'gamma'" in msg and "alpha, beta" in msg


def test_fewer_than_two_tools(tmp_path):
    msg = _bad(tmp_path, lambda c: (c["tools"].pop(), c.update(reviews=[])))
    assert "tools: needs at least 2 items, found 1" in msg


def test_date_without_zone(tmp_path):
    msg = _bad(tmp_path, lambda c: c.update(published_at="2026-11-20T09:00:00"))
    assert "published_at: '2026-11-20T09:00:00' needs a time zone" in msg


def test_http_link_refused(tmp_path):
    msg = _bad(tmp_path, lambda c: c.update(url="http://verdicts.example.com/compare/x"))
    assert "https" in msg


def test_malformed_json_and_yaml(tmp_path):
    (tmp_path / "a.json").write_text('{"slug": "x",', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"a\.json: not valid JSON"):
        load_files([tmp_path / "a.json"])
    (tmp_path / "b.yaml").write_text("slug: [unclosed\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"b\.yaml: not valid YAML"):
        load_files([tmp_path / "b.yaml"])


def test_same_slug_twice_in_one_import(tmp_path):
    a = write_json(tmp_path / "a.json", comparison("dup", days_ago(1)))
    b = write_json(tmp_path / "b.json", comparison("dup", days_ago(2)))
    with pytest.raises(InvalidInput, match="slug already used by .*a.json record 1"):
        load_files([a, b])


def test_reimport_updates_by_slug_and_keeps_tool_ids(session, tmp_path):
    first = comparison("same", days_ago(2))
    upsert(session, load_files([write_json(tmp_path / "1.json", first)]))
    [row] = list_comparisons(session)
    tool_ids = [t.id for t in row.tools]
    changed = comparison("same", days_ago(1), title="A new title")
    changed["tools"][0]["entry_price"] = "$20/mo"
    changed["reviews"].append({"tool": "beta", "reviewer": "Cy", "verdict": "skip", "quote": "Meh."})
    created, updated = upsert(session, load_files([write_json(tmp_path / "2.json", changed)]))
    assert (created, updated) == (0, 1)
    [row] = list_comparisons(session)
    assert row.title == "A new title" and row.published_at == days_ago(1)
    assert [t.id for t in row.tools] == tool_ids and row.tools[0].entry_price == "$20/mo"
    assert panel_split(row, row.tools[1]).label() == "50%"


def test_panel_and_community_percentages(session, tmp_path):
    upsert(session, load_files([write_json(tmp_path / "c.json", comparison("p", days_ago(1)))]))
    [row] = list_comparisons(session)
    alpha, beta = row.tools
    assert panel_split(row, alpha).label() == "50%" and panel_split(row, beta).label() == "100%"
    assert community_split(alpha).label() == "75%" and community_split(beta).label() == "—"


def test_cli_import_is_all_or_nothing(verdicts, settings, tmp_path):
    good = write_json(tmp_path / "good.json", [comparison("a", days_ago(1)), comparison("b", days_ago(2))])
    bad = write_json(
        tmp_path / "bad.json",
        comparison(
            "c", days_ago(1), tools=2, reviews=[{"tool": "zeta", "reviewer": "X", "verdict": "ship", "quote": "q"}]
        ),
    )
    before = db_snapshot(settings.database_url)
    result = verdicts("comparisons", "import", str(good), str(bad))
    assert result.code == 4
    assert result.err.count("\n") == 1 and "bad.json: record 1 (c): reviews[0].tool" in result.err
    assert db_snapshot(settings.database_url) == before


def test_cli_import_dry_run_and_list(verdicts, settings, tmp_path):
    path = write_json(tmp_path / "c.json", [comparison("a-b", NOW), comparison("c-d", days_ago(3))])
    assert verdicts("comparisons", "import", str(path), "--dry-run").code == 0
    assert "a-b" not in verdicts("comparisons", "list").out
    result = verdicts("comparisons", "import", str(path))
    assert result.code == 0 and "2 new" in result.out
    listing = verdicts("comparisons", "list").out
    assert listing.index("a-b") < listing.index("c-d")  # newest first
    assert (
        "Alpha a-b 50%" in listing
        and "Beta a-b 100%" in listing
        and "Alpha a-b 75%" in listing
        and "Beta a-b —" in listing
    )
    recent = verdicts("comparisons", "list", "--since", days_ago(1).date().isoformat()).out
    assert "a-b" in recent and "c-d" not in recent


def test_line_breaks_in_a_title_are_refused_at_import(tmp_path):
    msg = _bad(tmp_path, lambda c: c.update(title="Evil\r\nBcc: victim@example.com"))
    assert "record 2 (bad-one)" in msg and "title" in msg


def test_every_problem_of_a_file_is_listed_at_once_in_words_not_patterns(verdicts, settings, tmp_path):
    """One import names them all (it took one try per problem before); a slug's rule is said, not its regular
    expression."""
    bad_slug = comparison("Claude_vs_Mistral", days_ago(1))
    no_url = comparison("no-url", days_ago(1))
    no_url.pop("url")
    two_line_title = comparison("two-lines", days_ago(1), title="Evil\nBcc: victim@example.com")
    path = write_json(
        tmp_path / "week.json", [comparison("fine", days_ago(1)), bad_slug, no_url, two_line_title, "oops"]
    )
    before = db_snapshot(settings.database_url)
    result = verdicts("comparisons", "import", str(path), "--dry-run")
    assert result.code == 4 and "week.json: 4 problems, so nothing was imported:" in result.err
    assert (
        "record 2 (Claude_vs_Mistral): slug: 'Claude_vs_Mistral' must be lowercase letters and digits, words joined "
        "by single hyphens"
    ) in result.err
    assert "record 3 (no-url): url: is required" in result.err
    assert (
        "record 4 (two-lines): title: 'Evil\\nBcc: victim@example' contains U+000A LINE FEED" in result.err
        and "record 5: expected an object, got str" in result.err
    )
    assert "[a-z0-9]" not in result.err
    assert db_snapshot(settings.database_url) == before


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda c: c.update(published_at="next tuesday"),
            "published_at: 'next tuesday' is not a date and time: write it as 2026-11-20T09:00:00+00:00",
        ),
        (lambda c: c["tools"][1].update(name="N" * 201), "tools[1].name: is 201 characters, over the limit of 200"),
        (
            lambda c: c["tools"][0]["community_votes"].update(ship=-1),
            "tools[0].community_votes.ship: must be 0 or more, not -1",
        ),
        (lambda c: c["reviews"][2].update(quote="  "), "reviews[2].quote: must not be empty"),
        (lambda c: c.update(url="nope"), "url: 'nope' is not a link"),
        (lambda c: c["tools"][0].update(colour="red"), "tools[0].colour: is not a field of the import format"),
    ],
)
def test_errors_say_it_in_our_words_quote_the_value_and_write_paths_one_way(tmp_path, mutate, expected):
    msg = _bad(tmp_path, mutate)
    assert f"record 2 (bad-one): {expected}" in msg
    assert "Input should" not in msg and ".0." not in msg


@pytest.mark.parametrize("data", [[], {"comparisons": []}])
def test_a_file_without_comparisons_is_refused(verdicts, settings, tmp_path, data):
    before = db_snapshot(settings.database_url)
    result = verdicts("comparisons", "import", str(write_json(tmp_path / "empty.json", data)))
    assert result.code == 4
    assert (
        "empty.json: expected a comparison object" in result.err
        and "found an empty list, so there is nothing to import" in result.err
    )
    assert db_snapshot(settings.database_url) == before
