"""The editor's short Markdown intro, for both parts of the email: HTML for the HTML part, and text
that reads as text (emphasis without its markers, links as ``text <url>``) for the text part."""

from __future__ import annotations

import textwrap
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup

#: The text part's column: short enough for any reader, long enough for a sentence.
WIDTH = 72


@lru_cache
def _markdown() -> MarkdownIt:
    # CommonMark without raw HTML: editors' text can format and link, never inject markup.
    return MarkdownIt("commonmark", {"html": False}).disable(
        ["image", "heading", "lheading", "fence", "code", "html_block", "html_inline"]
    )


def intro_html(text: str) -> Markup:
    """The intro as safe HTML (links only where markdown-it allows: no javascript:)."""
    return Markup(_markdown().render(text.replace("\r\n", "\n")))


def intro_text(text: str, width: int = WIDTH) -> str:
    """The intro as plain text: paragraphs wrapped at ``width``, lists with bullets, no Markdown
    markers, and no URL broken across lines (a URL holds no space, and words are never split)."""
    root = SyntaxTreeNode(_markdown().parse(text.replace("\r\n", "\n")))
    return "\n\n".join(_block(node, width) for node in root.children)


def wrap(text: str, width: int, first: str = "", rest: str = "") -> str:
    """``text`` filled to ``width``, each hard line break kept; long words (URLs) stay whole."""
    return "\n".join(
        textwrap.fill(
            line,
            width,
            initial_indent=first if i == 0 else rest,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )
        or first.rstrip()
        for i, line in enumerate(text.split("\n"))
    )


def _block(node: SyntaxTreeNode, width: int, first: str = "", rest: str = "") -> str:
    if node.type == "paragraph":
        return wrap(_inline(node.children[0]), width, first, rest)
    if node.type in ("bullet_list", "ordered_list"):
        start, gap = int(node.attrs.get("start", 1)), "\n" if _tight(node) else "\n\n"
        items = []
        for i, item in enumerate(node.children):
            marker = "- " if node.type == "bullet_list" else f"{start + i}. "
            items.append(_items(item, width, rest + marker, rest + " " * len(marker), gap))
        return gap.join(items)
    if node.type == "blockquote":
        return f"\n{rest}>\n".join(_block(child, width, first + "> ", rest + "> ") for child in node.children)
    if node.type == "hr":
        return first + "-" * 20
    return first + node.content  # nothing else is enabled


def _items(item: SyntaxTreeNode, width: int, first: str, rest: str, gap: str) -> str:
    blocks = [_block(child, width, first if i == 0 else rest, rest) for i, child in enumerate(item.children)]
    return gap.join(blocks) or first.rstrip()


def _tight(node: SyntaxTreeNode) -> bool:
    # markdown-it hides the paragraphs of a tight list (items without blank lines between them).
    return all(p.hidden for item in node.children for p in item.children if p.type == "paragraph")


def _inline(node: SyntaxTreeNode) -> str:
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type == "softbreak":
        return " "
    if node.type == "hardbreak":
        return "\n"
    text = "".join(_inline(child) for child in node.children)
    if node.type == "link":
        href = str(node.attrs["href"])
        # Angle brackets: clients link the whole URL and nothing of the punctuation after it.
        return f"<{text}>" if href.removeprefix("mailto:") == text else f"{text} <{href}>"
    return text  # inline, em, strong: the words without their markers
