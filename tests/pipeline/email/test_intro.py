"""The editor's Markdown intro in the text part: read as text, URLs whole."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.email.intro import WIDTH, intro_text

word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789", min_size=1, max_size=12)
url = st.builds(
    lambda host, path: f"https://{host}.example.com/{path}",
    st.text(alphabet="abcdefghij", min_size=1, max_size=10),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-/._~?=&", max_size=90),
)
words = st.lists(word, min_size=1, max_size=6).map(" ".join)
piece = st.one_of(
    word,
    words.map(lambda w: f"*{w}*"),
    words.map(lambda w: f"**{w}**"),
    words.map(lambda w: f"__{w}__"),
    st.tuples(words, url).map(lambda p: f"[{p[0]}]({p[1]})"),
    url.map(lambda u: f"<{u}>"),
)
paragraph = st.lists(piece, min_size=1, max_size=25).map(" ".join)
bullets = st.lists(paragraph, min_size=1, max_size=3).map(lambda ps: "\n".join(f"- {p}" for p in ps))
block = st.one_of(paragraph, bullets, paragraph.map(lambda p: f"> {p}"))
markdown = st.lists(block, min_size=1, max_size=4).map("\n\n".join)


@settings(max_examples=300, deadline=None)
@given(markdown)
def test_no_url_is_split_and_no_markdown_marker_remains(source):
    text = intro_text(source)
    urls = re.findall(r"\]\(([^)]+)\)|<(https://[^>]+)>", source)
    for found in (a or b for a, b in urls):
        assert any(f"<{found}>" in line for line in text.splitlines()), f"{found} is not whole on one line"
    prose = re.sub(r"<https://[^>]+>", "", text)
    assert "**" not in prose and "__" not in prose and "](" not in prose and "*" not in prose
    assert all(len(line) <= WIDTH or " " not in line.lstrip("-> ").rstrip() for line in text.splitlines())


def test_emphasis_links_and_lists_read_as_text():
    source = (
        "This week is a **rematch**, and *the* [full results](https://x.example/r) are up.\n\n"
        "- first\n- second\n\n3. three\n4. four\n\nWrite to <team@x.example>."
    )
    assert intro_text(source) == (
        "This week is a rematch, and the full results <https://x.example/r> are\nup.\n\n"
        "- first\n- second\n\n3. three\n4. four\n\nWrite to <team@x.example>."
    )
