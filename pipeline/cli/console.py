"""Shared pieces of the command line: consoles, settings loading, time options, progress."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.config import Settings, get_settings, setting_problem
from pipeline.email.render import check_overrides
from pipeline.errors import ConfigurationError, InvalidInput
from pipeline.store.db import require_schema
from pipeline.store.models import utcnow

if TYPE_CHECKING:  # only the alias: the console must not load the send loop (and its providers) at import
    from pipeline.delivery.send import ProgressFn

# Readers' names, titles and subjects pass through every print: markup is off, so a "[/]" in a name is text, not
# a crash, and valid markup cannot put a link into the operator's terminal. Styled words are Text, built in code.
out = Console(markup=False)
err = Console(stderr=True, markup=False)


def load_settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(map(setting_problem, exc.errors()))
        raise ConfigurationError(f"configuration: {problems}") from None
    check_overrides(settings.templates_dir)  # a broken override stops every command now, not the Monday send
    return settings


def ready() -> Settings:
    settings = load_settings()
    require_schema(settings.database_url)
    return settings


def parse_moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} {value!r} is not an ISO 8601 date-time, e.g. 2026-11-30T09:00:00+00:00") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{option} {value!r} has no time zone: add one, e.g. {value}+00:00 or {value}Z")
    if option == "--now" and moment > utcnow():
        # A future cut-off would hide every comparison published before it from later issues.
        raise InvalidInput(f"--now {value!r} is in the future; use it only to replay a past moment")
    return moment


@contextmanager
def progress(label: str) -> Iterator[ProgressFn]:
    """A Rich bar on a terminal; plain log lines (every ~10%) when piped or scheduled."""
    if err.is_terminal:
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    step = {"next": 0}

    def log_line(done: int, total: int) -> None:
        if done >= step["next"] or done == total:
            err.print(f"{label}: {done}/{total}", highlight=False)
            step["next"] = done + max(1, total // 10)

    yield log_line
