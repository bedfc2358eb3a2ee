"""Bodies cut at their slots: every way of filling them gives the same reader's copy."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import orjson
from hypothesis import assume, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from pipeline.email.personal import PERSONAL_FIELDS, PersonalTemplate, dumps, html_values, json_values, merge_values
from pipeline.email.render import Recipient, personalise, render_issue
from pipeline.errors import InvalidInput
from subscribers.addresses import clean_name
from tests.conftest import seed_issue

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80)  # any character a str can hold
literal = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="@"), max_size=80)


@hyp_settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(literal, min_size=1, max_size=6),
    values=st.fixed_dictionaries({f: text for f in PERSONAL_FIELDS}),
    fields=st.lists(st.sampled_from(PERSONAL_FIELDS), max_size=5),
)
def test_the_json_fill_is_exactly_the_filled_body_as_a_json_string(parts, values, fields):
    """Postmark, Resend and SES get bodies whose literal parts were JSON-escaped once per send, and
    a reader's values once for both bodies: quotes, backslashes, control characters and non-ASCII
    in the parts or the values (the name markup-escaped in the HTML) must come out as if the
    whole copy had been serialised."""
    body = parts[0] + "".join(f"@@{f}@@{p}" for f, p in zip(fields, parts[1:] + [""] * len(fields), strict=False))
    template = PersonalTemplate(body)
    html_escaped, text_escaped = json_values(values)
    document = [
        {
            "HtmlBody": template.fill_json(html_escaped),
            "To": values["name"],
            "TextBody": template.fill_json(text_escaped),
        }
    ] * 2
    expected = [
        {"HtmlBody": template.fill(html_values(values)), "To": values["name"], "TextBody": template.fill(values)}
    ] * 2
    body = dumps(document)
    assert json.loads(body) == expected
    assert body == orjson.dumps(expected)


# Names as the sign-up form and the CSV import keep them (subscribers.addresses.clean_name). Left out: C1
# controls and noncharacters, which no character reference can carry (HTML maps &#128; to "€" and
# drops &#xFFFE;); clean_name lets C1 controls through, which is for it to refuse.
names = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Cn"]), min_size=1, max_size=200)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def test_any_name_gives_an_ascii_html_part_that_shows_the_name_exactly(session, settings, tmp_path):
    rendered = render_issue(session, seed_issue(session, tmp_path), settings)

    @hyp_settings(max_examples=200, deadline=None)
    @given(raw=names)
    def check(raw: str) -> None:
        try:
            name = clean_name(raw)
        except InvalidInput:
            return
        assume(name)
        html = personalise(rendered, Recipient(1, "a@example.com", name), settings).html
        assert html.isascii()
        parser = _Text()
        parser.feed(html)
        assert f"Hi {name}," in "".join(parser.parts)
        # The provider-side merges (Mailgun, SendGrid) and the JSON bodies get the same markup.
        assert merge_values({"name": name})["name_html"] == html_values({"name": name})["name"]
        assert json_values({"name": name})[0]["name"] == orjson.dumps(html_values({"name": name})["name"])[1:-1]

    check()
