"""Line-ups: each reader's order of the issue's comparisons, from their interests."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.content.lineups import lineup_for

CATEGORIES = ["Coding", "Writing", "Images", "Audio", "Agents"]
issues = st.lists(
    st.tuples(st.integers(1, 10**6), st.frozensets(st.sampled_from([c.casefold() for c in CATEGORIES]), max_size=3)),
    max_size=8,
    unique_by=lambda entry: entry[0],
)


def _matches(entry, wanted) -> bool:
    return bool(entry[1] & {w.strip().casefold() for w in wanted})


@given(issues, st.lists(st.sampled_from(CATEGORIES), max_size=4), st.booleans())
def test_a_lineup_is_the_issue_reordered_or_a_non_empty_part_of_it(issue, wanted, only):
    lineup = lineup_for(issue, wanted, only)
    order = [cid for cid, _ in issue]
    matching = [cid for cid, cats in issue if _matches((cid, cats), wanted)]
    assert len(set(lineup)) == len(lineup) and set(lineup) <= set(order)
    if issue:
        assert lineup, "never an empty email"
    if only and matching:
        assert list(lineup) == matching
    else:  # every comparison, matching ones first, each group in the issue's order
        assert sorted(lineup) == sorted(order)
        assert list(lineup) == matching + [cid for cid in order if cid not in matching]


@given(issues, st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3), st.data())
def test_matching_ignores_case_and_spaces(issue, wanted, data):
    typed = [data.draw(st.sampled_from([w, w.upper(), f"  {w.lower()} "])) for w in wanted]
    for only in (False, True):
        assert lineup_for(issue, typed, only) == lineup_for(issue, wanted, only)


@given(issues, st.booleans())
def test_no_interests_is_the_issue_as_it_is(issue, only):
    assert lineup_for(issue, [], only) == tuple(cid for cid, _ in issue)


def test_a_reader_whose_interests_match_nothing_gets_the_whole_issue():
    issue = [(1, frozenset({"coding"})), (2, frozenset({"writing"}))]
    assert lineup_for(issue, ["Audio"], only=True) == (1, 2)
    assert lineup_for(issue, ["Writing"], only=True) == (2,)
    assert lineup_for(issue, ["writing"], only=False) == (2, 1)
