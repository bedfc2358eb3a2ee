"""The welcome email a reader gets once, right after confirming: rendered once (templates and MJML, cached
per process until the latest issue or the settings change), personalised per reader like an issue."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import jinja2
from mjml import mjml2html
from sqlmodel import Session, col, select

from pipeline.config import Settings
from pipeline.email.lint import Lint, lint_html
from pipeline.email.personal import PERSONAL_FIELDS, Body, PersonalTemplate, ascii_markup
from pipeline.email.render import Placeholder, Recipient, forward_url, jinja_env, reader_url, web_url
from pipeline.errors import RenderError
from pipeline.store.models import Issue, IssueStatus
from subscribers.tokens import PREFERENCES, REFERRAL, UNSUBSCRIBE, make_token

DAYS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
#: Cron's day numbers (0 and 7 are both Sunday).
DAY_NUMBERS = dict(enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]))


def schedule_words(cron: str, timezone: str) -> str:
    """VERDICTS_SCHEDULE as a reader reads it ("every Monday at 09:00 UTC"); a schedule that is not one
    fixed day and time a week (ranges, steps, several days) is just "once a week", never a wrong promise."""
    fields = cron.split()
    if len(fields) != 5 or fields[2:4] != ["*", "*"] or not (fields[0].isdigit() and fields[1].isdigit()):
        return "once a week"
    day = fields[4].lower()
    day = DAY_NUMBERS[int(day)] if day.isdigit() and int(day) in DAY_NUMBERS else day
    if day not in DAYS or int(fields[1]) > 23 or int(fields[0]) > 59:
        return "once a week"
    return f"every {DAYS[day]} at {int(fields[1]):02d}:{int(fields[0]):02d} {timezone.replace('_', ' ')}"


@dataclass(frozen=True)
class WelcomeFacts:
    """Everything the welcome says that is not personal: the cache key of its rendering."""

    brand: str
    site_url: str
    postal_address: str
    schedule: str
    templates_dir: Path | None
    latest_subject: str | None
    latest_url: str | None
    latest_week: str | None


@dataclass(frozen=True)
class RenderedWelcome:
    body: Body
    lint: Lint
    #: The latest sent issue's week: what the "Forward this verdict" link shares (None: no issue yet).
    latest_week: str | None = None


def welcome_facts(session: Session, settings: Settings) -> WelcomeFacts:
    """The settings the welcome uses, and the latest issue sent (its public web version), if any."""
    latest = session.exec(
        select(Issue).where(col(Issue.status) == IssueStatus.sent).order_by(col(Issue.sent_at).desc()).limit(1)
    ).first()
    return WelcomeFacts(
        settings.from_name,
        settings.base_url,
        settings.postal_address,
        schedule_words(settings.schedule, settings.timezone),
        settings.templates_dir,
        latest.subject if latest else None,
        web_url(settings, latest.week) if latest else None,
        latest.week if latest else None,
    )


def render_welcome(session: Session, settings: Settings) -> RenderedWelcome:
    """The welcome as every new reader gets it, with its lint (the issue's rules: unsubscribe link, address)."""
    facts = welcome_facts(session, settings)
    body = _compiled(facts)
    lint = lint_html(body.html.fill(_lint_slots), settings, subject=body.subject)
    return RenderedWelcome(body, lint, facts.latest_week)


#: The lint looks for the unsubscribe slot itself, as it does in an issue's rendered HTML.
_lint_slots = {f: f"@@{f}@@" for f in PERSONAL_FIELDS}


class WelcomeSources(NamedTuple):
    subject: str
    mjml: str
    text: str


def welcome_sources(facts: WelcomeFacts) -> WelcomeSources:
    """The welcome's MJML and text from the templates: what ``_compiled`` compiles (and the official MJML
    check compiles too)."""
    subject = f"Welcome to {facts.brand}"
    context = {
        "web": False,
        "brand": {"name": facts.brand, "site_url": facts.site_url},
        "issue": {
            "subject": subject,
            "preheader": "What to expect, when, and how your Ship it / Skip it vote counts.",
            "more_count": 0,
            "more_url": facts.site_url,
        },
        "welcome": {
            "schedule": facts.schedule,
            "latest_subject": facts.latest_subject,
            "latest_url": facts.latest_url,
            "archive_url": f"{facts.site_url}/issues",
        },
        "footer": {
            "postal_address": facts.postal_address,
            "reason": f"You get this email because you subscribed to {facts.brand} and confirmed your address.",
            "subscribe_url": f"{facts.site_url}/subscribe",
        },
        "personal": {f: Placeholder(f"@@{f}@@") for f in PERSONAL_FIELDS},
    }
    env = jinja_env(facts.templates_dir)
    try:
        return WelcomeSources(
            subject,
            env.get_template("email/welcome.mjml.j2").render(context),
            env.get_template("email/welcome.txt.j2").render(context),
        )
    except jinja2.TemplateError as exc:
        raise RenderError(f"the welcome email did not render: {exc}") from None


@lru_cache(maxsize=4)
def _compiled(facts: WelcomeFacts) -> Body:
    """Templates and MJML, once per process for the same facts."""
    subject, mjml, text = welcome_sources(facts)
    try:
        html = ascii_markup(mjml2html(mjml))
    except ValueError as exc:
        raise RenderError(f"MJML did not compile for the welcome email: {exc}") from None
    return Body(subject, PersonalTemplate(html), PersonalTemplate(text))


def welcome_values(settings: Settings, recipient: Recipient, latest_week: str | None = None) -> dict[str, str]:
    """One reader's slot values: the greeting, their private links (the welcome has no votes), and the
    "Forward this verdict" link with their referral code: the latest issue's web version, or before the first
    issue the sign-up page (a test copy, reader 0, carries no code)."""
    sid = recipient.subscriber_id
    if latest_week is not None:
        forward = forward_url(settings, latest_week, sid)
    else:
        code = make_token(settings.secret_key.get_secret_value(), REFERRAL, sid) if sid else ""
        forward = f"{settings.base_url}/subscribe" + (f"?ref={code}" if code else "")
    return {
        "name": recipient.name or "there",
        "unsubscribe_url": reader_url(settings, UNSUBSCRIBE, sid),
        "preferences_url": reader_url(settings, PREFERENCES, sid),
        "forward_url": forward,
    }
