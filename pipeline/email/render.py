"""Render once, personalise many.

Jinja2 → MJML → HTML (mjml-python, the Rust MRML port) runs once per issue, with
placeholders such as ``@@unsubscribe_url@@`` where each reader's values go. The
result is split into literal parts once, so making one reader's copy is a join of
strings, not a template run.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import jinja2
from markupsafe import Markup
from mjml import mjml2html
from sqlmodel import Session

from pipeline.config import Settings
from pipeline.content.issues import issue_comparisons
from pipeline.content.lineups import LineUp, in_lineup
from pipeline.content.safe_text import inert
from pipeline.content.splits import Split, community_split, panel_split
from pipeline.content.votes import reader_votes
from pipeline.email.clicks import click_url
from pipeline.email.intro import intro_html, intro_text
from pipeline.email.lint import CLIP_BYTES, Lint, lint_html, site_of
from pipeline.email.personal import PERSONAL_FIELDS, WEB_FIELDS, Body, PersonalTemplate, ascii_markup, html_values
from pipeline.errors import ConfigurationError, RenderError, VerdictsError
from pipeline.resources import shipped_folder
from pipeline.store.models import Comparison, Issue, Tool, saved_id
from subscribers.tokens import PREFERENCES, REFERRAL, UNSUBSCRIBE, VOTE, make_token, make_vote_token

#: The repository's top-level templates/, installed as the package ``pipeline.templates``.
TEMPLATES_DIR = shipped_folder("pipeline.templates")


class Placeholder(str):
    """A per-reader slot; the only string allowed to carry the ``@@…@@`` marker."""


def _finalize(value: object) -> object:
    # Content can never forge a placeholder ("@@") nor reach a provider's merge tags (Mailgun's %recipient.x%
    # would hand a reader's private link to whoever wrote the URL): content.inert breaks them invisibly.
    if isinstance(value, Markup):  # the intro's HTML: markdown-it wrote it, and escaped the editor's text
        return Markup(inert(value))
    if isinstance(value, str) and not isinstance(value, Placeholder):
        return inert(value)
    return value


@lru_cache
def jinja_env(templates_dir: Path | None = None) -> jinja2.Environment:
    """The shipped templates; with ``templates_dir`` (VERDICTS_TEMPLATES_DIR), a template of the same
    name there replaces the shipped one and every other falls back to it."""
    return jinja2.Environment(
        finalize=_finalize,
        loader=jinja2.FileSystemLoader([TEMPLATES_DIR] if templates_dir is None else [templates_dir, TEMPLATES_DIR]),
        # Everything that becomes markup is escaped; the text twin is not markup.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2"), default=True, disabled_extensions=("txt.j2",)
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class TemplateOverrideError(ConfigurationError):
    """VERDICTS_TEMPLATES_DIR holds something that would not be used as meant."""


def check_overrides(templates_dir: Path | None) -> None:
    """Refuse, when a command starts rather than at 09:00 on Monday, an override folder that is
    missing, a file in it that replaces no shipped template (a typo would be silently ignored) or a
    template Jinja cannot compile."""
    if templates_dir is None:
        return
    templates_dir = templates_dir.absolute()  # the error names the file wherever the command ran
    if not templates_dir.is_dir():
        raise TemplateOverrideError(
            f"VERDICTS_TEMPLATES_DIR={templates_dir} is not a folder: create it with the "
            "templates you replace, or unset VERDICTS_TEMPLATES_DIR to use the shipped ones"
        )
    shipped = jinja_env().list_templates(extensions=["j2"])
    env = jinja_env(templates_dir)
    for path in sorted(templates_dir.rglob("*")):
        name = path.relative_to(templates_dir).as_posix()
        if path.is_dir() or any(part.startswith(".") for part in name.split("/")):  # folders, .git, editor files
            continue
        if name not in shipped:
            near = difflib.get_close_matches(name, shipped, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise TemplateOverrideError(
                f"VERDICTS_TEMPLATES_DIR: {path} replaces no shipped template ({hint}names are "
                "paths like email/partials/_footer.mjml.j2): rename it, or remove it"
            )
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            problem = (exc.message or "").rstrip(".")
            raise TemplateOverrideError(
                f"VERDICTS_TEMPLATES_DIR: {path}, line {exc.lineno}: {problem}: fix it, "
                "or remove it to use the shipped template"
            ) from None
        except UnicodeDecodeError:
            raise TemplateOverrideError(f"VERDICTS_TEMPLATES_DIR: {path} is not UTF-8 text: save it as UTF-8") from None


# The views the templates see: plain values, every figure derived here, not in templates.
@dataclass(frozen=True)
class ToolView:
    name: str
    category: str
    tagline: str
    description: str
    entry_price: str
    url: str | None
    panel_ship: int
    panel_skip: int
    panel_ship_pct: int | None
    community_ship_pct: int | None
    community_votes: int
    # The reader's voting link for this tool ("@@vote_url@@/<tool id>"; the template adds "/ship" or "/skip").
    vote_url: Placeholder


@dataclass(frozen=True)
class ReviewView:
    tool_name: str
    reviewer: str
    lens: str | None
    verdict: str
    quote: str


@dataclass(frozen=True)
class ComparisonView:
    title: str
    question: str
    url: str
    tools: list[ToolView]
    reviews: list[ReviewView]
    slug: str  # the web version's sign-up links name it as their source
    # "Read the full comparison": through our counting redirect in the email, the comparison itself on the web.
    read_url: str


def community_of(tool: Tool, votes: dict[int, tuple[int, int]]) -> Split:
    """The readers' split of ``tool`` from ``tool_votes``."""
    return community_split(tool, votes.get(saved_id(tool), (0, 0)))


def comparison_view(c: Comparison, votes: dict[int, tuple[int, int]], read_url: str | None = None) -> ComparisonView:
    tools = []
    for t in c.tools:
        panel, community = panel_split(c, t), community_of(t, votes)
        tools.append(
            ToolView(
                t.name,
                t.category,
                t.tagline,
                t.description,
                t.entry_price,
                t.url,
                panel.ship,
                panel.skip,
                panel.pct,
                community.pct,
                community.total,
                Placeholder(f"@@vote_url@@/{t.id}"),
            )
        )
    names = {t.slug: t.name for t in c.tools}
    reviews = [ReviewView(names[r.tool_slug], r.reviewer, r.lens, r.verdict, r.quote) for r in c.reviews]
    return ComparisonView(c.title, c.question, c.url, tools, reviews, c.slug, read_url or c.url)


@dataclass(frozen=True)
class RenderedIssue:
    issue_id: int
    week: str
    preheader: str
    body: Body
    lint: Lint
    #: The comparisons' ids in the order this body shows them (``content.lineups``).
    lineup: LineUp = ()

    @property
    def subject(self) -> str:
        return self.body.subject


class Recipient(NamedTuple):
    """Who a copy is for. A tuple: the send makes one per reader, and a frozen dataclass costs a
    microsecond more to build."""

    subscriber_id: int
    email: str
    name: str


@dataclass(frozen=True)
class PersonalCopy:
    html: str
    text: str
    unsubscribe_url: str


def tool_votes(session: Session, comparisons: list[Comparison]) -> dict[int, tuple[int, int]]:
    """Readers' (ship, skip) for every tool of ``comparisons``, in one query: the community split."""
    return reader_votes(session, [saved_id(t) for c in comparisons for t in c.tools])


def _context(
    issue: Issue,
    comparisons: list[Comparison],
    settings: Settings,
    votes: dict[int, tuple[int, int]],
    *,
    web: bool = False,
    reordered: bool = False,
    skipped: int = 0,
) -> dict[str, object]:
    week_no = issue.week.split("-W")
    return {
        "web": web,
        "brand": {"name": settings.from_name, "site_url": settings.base_url},
        "issue": {
            "number": issue.id,
            "week_label": f"Week {int(week_no[1])} · {week_no[0]}",
            "subject": issue.subject,
            "preheader": issue.preheader,
            "intro": issue.intro,
            "intro_html": intro_html(issue.intro),
            "intro_text": intro_text(issue.intro),
            "web_url": web_url(settings, issue.week),
            "more_count": issue.more_count,
            "more_url": settings.base_url,
        },
        "comparisons": [
            comparison_view(c, votes, None if web else click_url(settings, saved_id(issue), saved_id(c)))
            for c in comparisons
        ],
        # A reader's own line-up says so: matching comparisons first, or how many "only my interests" left out.
        "lineup": {"reordered": reordered, "skipped": skipped},
        "footer": {
            "postal_address": settings.postal_address,
            "reason": f"You get this email because you subscribed to {settings.from_name} and confirmed your address.",
            "subscribe_url": f"{settings.base_url}/subscribe",
        },
        "personal": {f: Placeholder(f"@@{f}@@") for f in PERSONAL_FIELDS + (WEB_FIELDS if web else ())},
    }


def web_url(settings: Settings, week: str) -> str:
    """The issue's public web version: the same for every reader, no personal data."""
    return f"{settings.base_url}/issues/{week}"


def forward_url(settings: Settings, week: str, subscriber_id: int) -> str:
    """The "Forward this verdict" link: the public web version with the reader's referral code, which names who
    shared and acts for nobody (never a private link). A test copy (reader 0) has no code."""
    if not subscriber_id:
        return web_url(settings, week)
    return (
        f"{web_url(settings, week)}?ref={make_token(settings.secret_key.get_secret_value(), REFERRAL, subscriber_id)}"
    )


class Sources(NamedTuple):
    mjml: str
    text: str
    comparisons: list[Comparison]


def render_sources(
    session: Session, issue: Issue, settings: Settings, *, web: bool = False, lineup: LineUp | None = None
) -> Sources:
    """The issue's MJML and text from the templates: what ``render_issue`` compiles (and the official
    MJML check compiles too). ``lineup``: the comparisons in one reader's order (``content.lineups``)."""
    if any(ord(ch) < 32 for ch in issue.subject + issue.preheader):
        raise RenderError(f"issue {issue.id}: the subject or preheader contains a line break or control character")
    everything = issue_comparisons(session, issue)
    comparisons = in_lineup(everything, lineup)
    # Readers' votes so far count in the community split the next issue shows.
    context = _context(
        issue,
        comparisons,
        settings,
        tool_votes(session, comparisons),
        web=web,
        reordered=comparisons != everything,
        skipped=len(everything) - len(comparisons),
    )
    env = jinja_env(settings.templates_dir)
    try:
        return Sources(
            env.get_template("email/weekly.mjml.j2").render(context),
            env.get_template("email/weekly.txt.j2").render(context),
            comparisons,
        )
    except jinja2.TemplateError as exc:
        raise RenderError(f"template error in issue {issue.id}: {exc}") from None


def render_issue(
    session: Session, issue: Issue, settings: Settings, *, web: bool = False, lineup: LineUp | None = None
) -> RenderedIssue:
    """The one expensive step of a send: templates and MJML, once for the whole list (once per distinct
    ``lineup``: ``email.editions``). ``web``: the public web version, whose footer invites a visitor to
    subscribe instead of offering to unsubscribe someone who never subscribed."""
    mjml_source, text, comparisons = render_sources(session, issue, settings, web=web, lineup=lineup)
    try:
        compiled = mjml2html(mjml_source)
    except ValueError as exc:
        raise RenderError(f"MJML did not compile for issue {issue.id}: {exc}") from None
    compiled = ascii_markup(compiled)
    body = Body(issue.subject, PersonalTemplate(compiled), PersonalTemplate(text))
    lint = lint_html(
        compiled,
        settings,
        subject=issue.subject,
        link_prefixes={site_of(c.url) for c in comparisons} | {t.url for c in comparisons for t in c.tools if t.url},
    )
    return RenderedIssue(
        saved_id(issue), issue.week, issue.preheader, body, lint, tuple(saved_id(c) for c in comparisons)
    )


@dataclass(frozen=True)
class Transactional:
    subject: str
    html: str
    text: str


def render_confirmation(settings: Settings, *, email: str, confirm_url: str) -> Transactional:
    """The double opt-in email: rendered per sign-up (it is small, and not a newsletter). It greets nobody by
    name: the name on the form was typed by whoever typed the address (``subscribers.mailer``)."""
    context = {
        "brand": {"name": settings.from_name},
        "email": email,
        "confirm_url": confirm_url,
        "max_age_hours": settings.confirm_max_age_hours,
        "postal_address": settings.postal_address,
    }
    env = jinja_env(settings.templates_dir)
    try:
        html_body = ascii_markup(mjml2html(env.get_template("email/confirm.mjml.j2").render(context)))
        text = env.get_template("email/confirm.txt.j2").render(context)
    except (jinja2.TemplateError, ValueError) as exc:
        raise RenderError(f"the confirmation email did not render: {exc}") from None
    return Transactional(f"Confirm your subscription to {settings.from_name}", html_body, text)


def reader_url(settings: Settings, purpose: str, subscriber_id: int) -> str:
    """A reader's private link, e.g. ``/unsubscribe/<signed token>``."""
    return f"{settings.base_url}/{purpose}/{make_token(settings.secret_key.get_secret_value(), purpose, subscriber_id)}"


def personal_values(settings: Settings, rendered: RenderedIssue, recipient: Recipient) -> dict[str, str]:
    """One reader's slot values (as text): greeting name, private links, the voting link, the forward link."""
    sid = recipient.subscriber_id
    vote_token = make_vote_token(settings.secret_key.get_secret_value(), sid, rendered.issue_id)
    return {
        "name": recipient.name or "there",
        "unsubscribe_url": reader_url(settings, UNSUBSCRIBE, sid),
        "preferences_url": reader_url(settings, PREFERENCES, sid),
        "vote_url": f"{settings.base_url}/{VOTE}/{vote_token}",
        "forward_url": forward_url(settings, rendered.week, sid),
    }


def personalise(rendered: RenderedIssue, recipient: Recipient, settings: Settings) -> PersonalCopy:
    """The cheap per-reader step: a join of the rendered parts with this reader's values."""
    values = personal_values(settings, rendered, recipient)
    body = rendered.body
    return PersonalCopy(body.html.fill(html_values(values)), body.text.fill(values), values["unsubscribe_url"])


def preflight(
    rendered: RenderedIssue,
    recipients: Iterable[Recipient],
    settings: Settings,
    *,
    longest_name: int | None = None,
    largest_id: int | None = None,
    build: Callable[[Recipient], None] | None = None,
) -> int:
    """Check every reader's copy before the first message leaves; any failure stops the send.

    Copies differ only in the name and the ids inside links, so when the bounds are given the
    worst possible copy (the longest name, every character escaped to its longest entity, the
    largest id) is checked first; only if it fails is each reader's copy made, to name them.
    ``build`` builds a reader's message as the provider will be handed it, raising the error that
    stops the send (it names the reader). Returns how many copies were made (0: the bound settled it).
    """
    if rendered.lint.errors:
        raise RenderError(f"issue {rendered.issue_id} fails lint: " + "; ".join(rendered.lint.errors))
    if longest_name is not None and largest_id is not None:
        worst = Recipient(largest_id, "worst-case@example.com", '"' * longest_name)
        if _copy_problem(personalise(rendered, worst, settings)) is None:
            try:
                if build is not None:
                    build(worst)
                return 0
            except VerdictsError:  # each reader's own message then says whose fails
                pass
    count = 0
    for r in recipients:
        if problem := _copy_problem(personalise(rendered, r, settings)):
            raise RenderError(f"the copy for {r.email} {problem}; nothing was sent")
        if build is not None:
            build(r)
        count += 1
    return count


def _copy_problem(copy: PersonalCopy) -> str | None:
    size = len(copy.html.encode())
    if size > CLIP_BYTES:
        return f"is {size / 1024:.1f} KB, over Gmail's clip"
    if copy.unsubscribe_url not in copy.text or "@@" in copy.text:
        return "lacks its unsubscribe link in the text part"
    return None
