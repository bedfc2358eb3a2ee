"""What would hurt a reader, found before anything is sent: Gmail's clip, a missing
unsubscribe link or postal address (errors: approve and send refuse), and images without
alt text, plain-http links, links to unexpected sites, a long subject (warnings)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from markupsafe import escape

from pipeline.config import Settings
from pipeline.content.issues import SUBJECT_CHARS
from pipeline.email.personal import ascii_markup

#: Gmail clips messages whose HTML is larger than about 102 KB; warn well before.
CLIP_BYTES = 102 * 1024
WARN_BYTES = 90 * 1024
#: Phones show about this many characters of a subject.


@dataclass(frozen=True)
class Lint:
    html_bytes: int
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images_without_alt = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag == "img" and not (values.get("alt") or "").strip() and values.get("role") != "presentation":
            self.images_without_alt += 1


def lint_html(body: str, settings: Settings, *, subject: str = "", link_prefixes: Iterable[str] = ()) -> Lint:
    """``link_prefixes``: where links may point besides our own site (the comparisons' URLs)."""
    size = len(body.encode())
    warnings, errors = [], []
    if size > CLIP_BYTES:
        errors.append(f"HTML is {size / 1024:.1f} KB, over Gmail's 102 KB clip: drop a comparison or shorten quotes")
    elif size > WARN_BYTES:
        warnings.append(f"HTML is {size / 1024:.1f} KB, close to Gmail's 102 KB clip")
    if "@@unsubscribe_url@@" not in body:
        errors.append("no visible unsubscribe link in the HTML")
    first_line = settings.postal_address.splitlines()[0] if settings.postal_address else ""
    expected = ascii_markup(str(escape(first_line)))  # the HTML is kept ASCII
    if not first_line or (expected not in body and str(escape(first_line)) not in body):
        errors.append("no postal address in the HTML (set VERDICTS_POSTAL_ADDRESS)")
    parser = _Links()
    parser.feed(body)
    if parser.images_without_alt:
        warnings.append(f"{parser.images_without_alt} image(s) without alt text")
    allowed = {_host(u) for u in (settings.base_url, *link_prefixes)}
    web = [u for u in parser.links if not u.startswith(("@@", "mailto:"))]
    plain = sorted({u for u in web if urlsplit(u).scheme.lower() == "http"})
    if plain:
        warnings.append("links without https: " + ", ".join(plain[:5]))
    foreign = sorted({u for u in web if _host(u) not in allowed and u not in plain})
    if foreign:
        warnings.append("links to unexpected sites: " + ", ".join(foreign[:5]))
    if len(subject) > SUBJECT_CHARS:
        warnings.append(f"the subject is {len(subject)} characters; phones show about {SUBJECT_CHARS}")
    return Lint(size, warnings, errors)


def _host(url: str) -> str:
    # The real host (urlsplit drops user@ and :port), so look-alikes such as our-site.example.com.evil.net stand out.
    return (urlsplit(url.strip()).hostname or "").lower()


def site_of(url: str) -> str:
    """``https://host/`` of a URL: links anywhere on a comparison's site are expected."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"
