"""The sent email in a real browser (Debian's chromium): readable in dark mode, labels that hold together."""

from __future__ import annotations

import pytest

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.email.render import render_confirmation
from tests.conftest import comparison, days_ago, outbox_messages, seed_issue
from tests.e2e.conftest import shot

#: For each element with text of its own: its text, colour and the colour behind it (the first
#: ancestor's opaque background), and whether it is shown at all.
_TEXT_COLOURS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const backdrop = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] === 1) return c.slice(0, 3);
    }
    return null;
  };
  return [...document.querySelectorAll("body *")].filter((el) =>
    [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())
    && el.getClientRects().length && getComputedStyle(el).visibility === "visible"
    && getComputedStyle(el).opacity !== "0"
  ).map((el) => ({text: el.textContent.trim().slice(0, 40), fg: rgb(getComputedStyle(el).color).slice(0, 3),
                  bg: backdrop(el)}));
}"""


def contrast(fg: list[float], bg: list[float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""

    def luminance(rgb: list[float]) -> float:
        lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    light, dark = sorted([luminance(fg), luminance(bg)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.fixture
def sent_html(settings, session, tmp_path):
    """The HTML part of a real .eml from the outbox: a two-tool and a three-tool card."""
    items = [comparison("two", days_ago(1)), comparison("three", days_ago(1.1), tools=3)]
    issue = seed_issue(session, tmp_path, items=items, readers=1)
    send_issue(settings, issue.id, OutboxProvider(settings))
    [message] = outbox_messages(settings, f"{issue.id}-{issue.week}")
    return message.get_body(preferencelist=("html",)).get_content()


def _open(browser, html: str, scheme: str, width: int = 600):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.route("**/*", lambda route: route.abort())  # an email shows offline: no fonts, no images fetched
    page.set_content(html)
    return page


def _assert_readable(page, name: str, least: int) -> None:
    """At least ``least`` texts shown, each at WCAG AA contrast (4.5:1) with what is behind it."""
    shot(page, name)
    texts = page.evaluate(_TEXT_COLOURS)
    assert len(texts) >= least
    poor = [
        (t["text"], t["fg"], t["bg"], round(contrast(t["fg"], t["bg"]), 2))
        for t in texts
        if t["bg"] is None or contrast(t["fg"], t["bg"]) < 4.5
    ]
    assert poor == [], f"{name}: text below WCAG AA contrast 4.5:1"


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_every_text_of_the_issue_is_readable_in_both_colour_schemes(browser, sent_html, scheme):
    assert '<meta name="color-scheme" content="light dark"' in sent_html
    assert '<meta name="supported-color-schemes" content="light dark"' in sent_html
    page = _open(browser, sent_html, scheme)
    _assert_readable(page, f"email-{scheme}", least=50)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(13, 17, 23)") == (scheme == "dark")


def test_the_confirmation_email_is_readable_in_dark_mode(browser, settings):
    email = render_confirmation(settings, email="a@example.com", confirm_url="https://x.example/c")
    _assert_readable(_open(browser, email.html, "dark"), "confirmation-dark", least=5)


def test_each_verdict_label_sits_on_one_line_in_three_tool_cards(browser, sent_html):
    page = _open(browser, sent_html, "light")
    lines = page.evaluate("""() => [...document.querySelectorAll('a[href$="/ship"], a[href$="/skip"]')]
        .map((a) => [a.textContent, a.getClientRects().length])""")
    assert len(lines) == 2 * 5  # two labels for each of 2 + 3 tools
    assert [text for text, rects in lines if rects != 1] == []
    assert {text for text, _ in lines} == {"Ship\u00a0it", "Skip\u00a0it"}
