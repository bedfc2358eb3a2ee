"""`verdicts config …`: what the configuration is, where each value came from, and what is wrong with it."""

from __future__ import annotations

import re
import textwrap
import typing
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pipeline.cli.console import out
from pipeline.config import Settings, secret_setting
from pipeline.errors import ConfigurationError
from pipeline.ops.config_check import check_configuration, load_leniently

config_app = typer.Typer(
    help="The configuration: show it, check it, or print a .env template or its reference page.", no_args_is_help=True
)

PREFIX = Settings.model_config["env_prefix"]
#: A value a .env file and systemd's EnvironmentFile both read unquoted.
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,*=-]*")


@config_app.command("show")
def config_show() -> None:
    """Every setting, its value and where it came from (environment, .env file or default); secrets masked."""
    settings, errors = load_leniently()
    invalid = {error["loc"][0] for error in errors if error["loc"]}
    given = setting_sources()
    raw = {**DotEnvSettingsSource(Settings)(), **EnvSettingsSource(Settings)()}
    rows = []
    for name in Settings.model_fields:
        value = shown(name, raw[name] if name in invalid else getattr(settings, name))
        if name in invalid:
            value += " [red](invalid: see `verdicts config check`)[/]"
        rows.append((f"{PREFIX}{name.upper()}", value, given.get(name, "default")))
    env_file = Path(cast(str, Settings.model_config["env_file"])).resolve()  # one file, not the list it may be
    state = "read" if env_file.exists() else "not there"
    out.print(f"Settings from the environment, {env_file} ({state}) and defaults:", highlight=False, soft_wrap=True)
    if not out.is_terminal:  # piped, or under systemd-run --pipe: whole values, one setting a line, no 80-column table
        for setting, value, source in rows:
            typer.echo(f"{setting}\t{Text.from_markup(value).plain}\t{source}")
        return
    table = Table("setting", "value", "from")
    for row in rows:
        table.add_row(*map(Text.from_markup, row))  # shown() escapes the values and styles the notes
    out.print(table)


@config_app.command("check")
def config_check(
    dns: Annotated[bool, typer.Option("--dns/--no-dns", help="Look up the sending domain's SPF, DKIM, DMARC.")] = True,
) -> None:
    """Every problem of the configuration at once, each with its fix; exits non-zero (3) if any is an error."""
    findings = check_configuration(dns=dns)
    for finding in findings:
        subject = f"{finding.subject}: " if finding.subject else ""
        fix = f" — fix: {finding.fix}" if finding.fix else ""
        out.print(f"{finding.severity}: {subject}{finding.message}{fix}", highlight=False, markup=False, soft_wrap=True)
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    summary = f"{errors} error(s), {warnings} warning(s)"
    if errors:
        raise ConfigurationError(f"{summary}: fix the errors above, then run `verdicts config check` again")
    out.print(
        f"{summary}: the configuration can run for real."
        if not warnings
        else f"{summary}: it runs; read the warnings before real readers get mail.",
        highlight=False,
        soft_wrap=True,
    )


@config_app.command("example")
def config_example() -> None:
    """A .env template of every setting with its default (secrets empty), from the settings themselves:
    `verdicts config example > .env`."""
    typer.echo(env_example(), nl=False)


@config_app.command("docs")
def config_docs() -> None:
    """The configuration reference, every setting by group with its default, from the settings themselves:
    `verdicts config docs > docs/configuration.md`."""
    typer.echo(configuration_page(), nl=False)


def setting_sources() -> dict[str, str]:
    """Where each setting that is not a default came from; the environment wins over the .env file."""
    sources = {name: ".env" for name in DotEnvSettingsSource(Settings)()}
    sources |= {name: "environment" for name in EnvSettingsSource(Settings)()}
    return {name: source for name, source in sources.items() if name in Settings.model_fields}


def shown(name: str, value: Any) -> str:
    """A value as Rich markup, fit for a screen: secrets masked, a URL's password hidden."""
    if value is None:
        return "[dim](not set)[/]"
    if secret_setting(name):
        empty = not (value.get_secret_value() if isinstance(value, SecretStr) else str(value))
        return "[dim](empty)[/]" if empty else "********"
    if isinstance(value, bool):
        return str(value).lower()
    return escape(_without_password(str(value))) if str(value) else "[dim](empty)[/]"


def env_example() -> str:
    """deploy/.env.example: each setting commented out with its default and what it is for."""
    lines = [
        "# Weekly AI Tool Verdicts: every setting, with its default. Uncomment and set what your site needs;",
        "# `verdicts config check` lists what is still unsafe or missing. Secrets are left empty here.",
        "# Generated from the settings by `verdicts config example > deploy/.env.example`: do not edit by hand.",
    ]
    for name, field in Settings.model_fields.items():
        lines.append("")
        lines += [f"# {line}" for line in textwrap.wrap(_explained(field), 110, break_on_hyphens=False)]
        default = "" if secret_setting(name) else _dotenv(field.get_default(call_default_factory=True))
        lines.append(f"#{PREFIX}{name.upper()}={default}")
    return "\n".join(lines) + "\n"


def _explained(field: FieldInfo) -> str:
    """The field's description as a sentence, then its choices when it has a fixed set (``Literal``)."""
    sentences = [field.description[:1].upper() + field.description[1:] + "."] if field.description else []
    kinds = [field.annotation, *typing.get_args(field.annotation)]
    choices = [str(v) for kind in kinds if typing.get_origin(kind) is typing.Literal for v in typing.get_args(kind)]
    if choices:
        sentences.append(f"One of {', '.join(choices)}.")
    return " ".join(sentences)


def _dotenv(value: Any) -> str:
    """A default as a .env value: None is empty; quoted where a space, #, $ or quote would change its meaning."""
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    if "'" not in text:
        return f"'{text}'"  # single quotes: no $ expansion in python-dotenv, none in systemd either
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _without_password(text: str) -> str:
    """``scheme://user:***@host…`` for any URL that carries a password (DATABASE_URL, a webhook's)."""
    if "://" not in text or "@" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    userinfo, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}").geturl()


#: The settings' groups, in the order Settings declares them: a group starts at the setting named here and runs to
#: the next group's first, so a new setting joins the group it is declared in. Each names the page that explains it.
GROUPS: dict[str, tuple[str, str]] = {
    "database_url": ("Database and provider", "providers.md"),
    "postmark_server_token": ("Provider credentials", "providers.md#the-providers"),
    "postmark_webhook_auth": ("Webhooks", "providers.md#webhooks"),
    "secret_key": ("Links, sender and footer", "operating.md#2-write-the-configuration"),
    "editor_password": ("Editors", "usage.md#the-editor"),
    "votes_webhook_secret": ("Community votes", "usage.md#community-votes"),
    "webhook_secret": ("Webhooks to the site", "usage.md#webhooks-to-the-site"),
    "schedule": ("Schedule and issues", "usage.md#the-scheduler"),
    "pending_days": ("Subscribers and consent", "usage.md#consent-and-suppression"),
    "batch_size": ("Sending", "providers.md#what-happens-to-a-request"),
    "templates_dir": ("Running it for real", "operating.md"),
    "dkim_selector": ("The sending domain's DNS", "operating.md#3-check-it"),
}
#: The bounds pydantic enforces (annotated_types' metadata), as the page says them.
_LIMITS = {
    "ge": "at least {}",
    "gt": "more than {}",
    "le": "at most {}",
    "lt": "less than {}",
    "max_length": "at most {} characters",
}


def configuration_page() -> str:
    """docs/configuration.md: the settings by group, each with its default and what it is for."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from pipeline/config.py by `verdicts config docs > docs/configuration.md`: do not edit. -->",
        "",
        f"Every setting is an environment variable `{PREFIX}…`, or the same name in a `.env` file in the working",
        "folder (the environment wins). `verdicts config show` prints each value and where it came from,",
        "`verdicts config check` every problem at once with its fix, and `verdicts config example` a `.env` template",
        "of them all ([`deploy/.env.example`](../deploy/.env.example)). Secrets show no value here.",
        "",
        "`SECRET_KEY` must be a long random value before real readers get mail: with the development key (or one",
        "shorter than 32 bytes) `issue send`, `run-weekly`, `serve` and `scheduler` refuse to run unless `BASE_URL`",
        "is an example.com or localhost address.",
    ]
    for name, field in Settings.model_fields.items():
        if name in GROUPS:
            title, page = GROUPS[name]
            lines += ["", f"## {title}", "", f"More in [{page.partition('#')[0]}]({page}).", ""]
            lines += ["| setting | default | what it is |", "|---|---|---|"]
        described = " ".join(filter(None, [_explained(field), _limits(field)])) or "—"
        lines.append(f"| `{PREFIX}{name.upper()}` | {_shown_default(name, field)} | {_cell(described)} |")
    return "\n".join(lines) + "\n"


def _shown_default(name: str, field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "*unset*"
    if secret_setting(name):
        return "*a development value*" if str(default) else "*empty*"
    text = str(default).lower() if isinstance(default, bool) else str(default)
    return f"`{_cell(text)}`" if text else "*empty*"


def _limits(field: FieldInfo) -> str:
    """``ge=1, le=50`` as words: "At least 1, at most 50."."""
    found = [
        words.format(getattr(rule, key))
        for rule in field.metadata
        for key, words in _LIMITS.items()
        if getattr(rule, key, None) is not None
    ]
    return (", ".join(found).capitalize() + ".") if found else ""


def _cell(text: str) -> str:
    """Text fit for one Markdown table cell: a ``|`` would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")
