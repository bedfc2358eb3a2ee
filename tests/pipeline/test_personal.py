"""Bodies cut at their slots: every way of filling them gives the same reader's copy."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.personal import PERSONAL_FIELDS, PersonalTemplate, dumps, html_values, json_values

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80)  # any character a str can hold
literal = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="@"), max_size=80)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(literal, min_size=1, max_size=6), values=st.fixed_dictionaries({f: text for f in PERSONAL_FIELDS}),
       fields=st.lists(st.sampled_from(PERSONAL_FIELDS), max_size=5))
def test_the_json_fill_is_exactly_the_filled_body_as_a_json_string(parts, values, fields):
    """Postmark, Resend and SES get bodies whose literal parts were JSON-escaped once per send, and
    a reader's values once for both bodies: quotes, backslashes, control characters and non-ASCII
    in the parts or the values (the name markup-escaped in the HTML) must come out as if the
    whole copy had been serialised."""
    body = parts[0] + "".join(f"@@{f}@@{p}" for f, p in zip(fields, parts[1:] + [""] * len(fields)))
    template = PersonalTemplate(body)
    html_escaped, text_escaped = json_values(values)
    document = [{"HtmlBody": template.fill_json(html_escaped), "To": values["name"], "TextBody": template.fill_json(text_escaped)}] * 2
    expected = [{"HtmlBody": template.fill(html_values(values)), "To": values["name"], "TextBody": template.fill(values)}] * 2
    body = dumps(document)
    assert json.loads(body) == expected
    assert body == orjson.dumps(expected)
