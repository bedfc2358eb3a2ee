"""Render once, personalise many: templates, escaping, the text twin, lint and preflight."""

from __future__ import annotations

import re

import pytest

from pipeline.email.lint import CLIP_BYTES, lint_html
from pipeline.email.render import Recipient, personalise, preflight, render_issue
from pipeline.errors import RenderError
from subscribers.tokens import UNSUBSCRIBE, read_token
from tests.conftest import comparison, days_ago, seed_issue

HOSTILE = '<script>alert("x")</script> R&D @@unsubscribe_url@@'


def _hostile_items():
    item = comparison("hostile", days_ago(1), title="Evil <b>title</b> & co")
    item["reviews"][0]["quote"] = HOSTILE
    item["tools"][0]["tagline"] = "Tagline with @@name@@ inside"
    return [item, comparison("plain", days_ago(2))]


def test_html_card_has_every_part(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, comparisons=2)
    rendered = render_issue(session, issue, settings)
    html = personalise(rendered, Recipient(1, "a@example.com", "Ada"), settings).html
    for needle in [
        "Alpha cmp-0",
        "Beta cmp-0",
        "Developer Tools",
        "Alpha does things",
        "Free",
        "50%",
        "100%",
        "75%",
        "Solid primitive.",
        "SHIP",
        "SKIP",
        "https://verdicts.example.com/compare/cmp-0",
        "Which one should you ship with?",
        "Ada",
        settings.postal_address.split(",")[0],
    ]:
        assert needle in html, needle
    assert "@@" not in html and "None" not in html
    assert rendered.lint.errors == [] and rendered.lint.html_bytes < 90 * 1024
    assert '<meta name="viewport"' in html  # phones: the tool columns stack


def test_content_is_escaped_and_cannot_forge_placeholders(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, items=_hostile_items())
    rendered = render_issue(session, issue, settings)
    copy = personalise(rendered, Recipient(7, "a@example.com", "Eve <img src=x onerror=alert(1)>"), settings)
    assert "<script>" not in copy.html and "&lt;script&gt;" in copy.html
    assert "<b>title</b>" not in copy.html and "Evil &lt;b&gt;title&lt;/b&gt; &amp; co" in copy.html
    assert "<img src=x" not in copy.html and "Eve &lt;img" in copy.html
    # "@@unsubscribe_url@@" written in a quote stays text: it is not replaced by a reader's link.
    assert copy.html.count(copy.unsubscribe_url.replace("&", "&amp;")) == copy.html.count("/unsubscribe/")
    assert "Tagline with @" in copy.text and "Tagline with Eve" not in copy.text


def test_text_twin_is_real_text(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, comparisons=2)
    rendered = render_issue(session, issue, settings)
    text = personalise(rendered, Recipient(3, "a@example.com", ""), settings).text
    assert (
        text.splitlines()[0].strip() == issue.preheader.splitlines()[0].strip()
        or issue.preheader[:30] in text.splitlines()[0]
    )
    assert "Hi there," in text
    # The comparison's link goes through the counting redirect (pipeline.web.clicks); its title links directly.
    assert f"Read the full comparison: {settings.base_url}/r/{issue.id}/" in text
    assert "https://verdicts.example.com/unsubscribe/" in text
    assert settings.postal_address.split(",")[0] in text
    assert "<" not in re.sub(r"<https?://[^>]+>", "", text) and "&amp;" not in text


def test_each_reader_gets_a_private_signed_unsubscribe_link(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path)
    rendered = render_issue(session, issue, settings)
    a = personalise(rendered, Recipient(11, "a@example.com", "A"), settings)
    b = personalise(rendered, Recipient(12, "b@example.com", "B"), settings)
    assert a.unsubscribe_url != b.unsubscribe_url
    assert read_token(settings.secret_key.get_secret_value(), UNSUBSCRIBE, a.unsubscribe_url.rsplit("/", 1)[1]) == 11
    assert a.unsubscribe_url in a.text and a.unsubscribe_url not in b.html


def test_lint_warns_at_90kb_and_refuses_over_102kb(settings):
    base = "@@unsubscribe_url@@ " + settings.postal_address
    assert lint_html(base, settings).warnings == []
    warned = lint_html(base + "x" * 91 * 1024, settings)
    assert warned.warnings and not warned.errors
    refused = lint_html(base + "x" * CLIP_BYTES, settings)
    assert any("102 KB" in e for e in refused.errors)
    assert any("unsubscribe" in e for e in lint_html(settings.postal_address, settings).errors)


def test_preflight_refuses_an_oversized_copy_naming_the_reader(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path)
    rendered = render_issue(session, issue, settings)
    huge = Recipient(1, "huge@example.com", "N" * CLIP_BYTES)
    assert preflight(rendered, [Recipient(2, "ok@example.com", "Ok")], settings) == 1
    with pytest.raises(RenderError, match="huge@example.com"):
        preflight(rendered, [Recipient(2, "ok@example.com", "Ok"), huge], settings)


def test_lint_flags_plain_http_and_look_alike_hosts(settings):
    from pipeline.email.lint import lint_html

    body = (
        '<a href="@@unsubscribe_url@@">u</a> Weekly AI Tool Verdicts, 548 Market St '
        '<a href="https://verdicts.example.com.evil.net/p">a</a> '
        '<a href="https://verdicts.example.com@evil.net/">b</a> '
        '<a href="HTTP://verdicts.example.com/x">c</a> <a href="https://verdicts.example.com/ok">d</a> <img src="https://x/y.png">'
    )
    lint = lint_html(body, settings, subject="s" * 70)
    text = " ".join(lint.warnings)
    assert "evil.net/p" in text and "@evil.net" in text and "links without https: HTTP://" in text
    assert "/ok" not in text and "1 image(s) without alt text" in text and "70 characters" in text


def test_the_text_part_shows_the_intro_as_text(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path)
    issue.intro = (
        "A **rematch** this week, *finally*: the [long-awaited results of the first round of the "
        "tournament](https://verdicts.example.com/blog/2026/the-long-awaited-results) are in."
    )
    session.add(issue)
    session.commit()
    text = personalise(render_issue(session, issue, settings), Recipient(3, "a@example.com", "Ada"), settings).text
    assert "A rematch this week, finally: the long-awaited results of the first" in text
    assert "\nround of the tournament\n<https://verdicts.example.com/blog/2026/the-long-awaited-results> are\n" in text
    assert "**" not in text and "](" not in text


def test_the_confirmation_email_is_ascii_html_and_greets_nobody_by_name(settings):
    """Whoever typed the address typed the name: the confirmation has no name to carry (subscribers.mailer)."""
    from pipeline.email.render import render_confirmation

    email = render_confirmation(settings, email="zoe@xn--bcher-kva.example", confirm_url="https://x.example/c")
    assert email.html.isascii() and "Hello," in email.html and "Hello," in email.text
