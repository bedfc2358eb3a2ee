"""The `verdicts` command line: one command per thing an operator or editor does."""

from __future__ import annotations

import logging
import shutil
import sys
from importlib import metadata
from typing import Annotated

import typer
from rich.text import Text

from pipeline.cli.admin import database_app, providers_app, votes_app
from pipeline.cli.api_tokens import api_token_app
from pipeline.cli.audit import audit_app, cli_actor
from pipeline.cli.comparisons import comparisons_app
from pipeline.cli.config import config_app
from pipeline.cli.console import err, load_settings, out, parse_moment, progress, ready
from pipeline.cli.editors import editor_app
from pipeline.cli.issue import NowOption, issue_app
from pipeline.cli.webhooks import webhooks_app
from pipeline.delivery.providers import get_provider
from pipeline.errors import VerdictsError
from pipeline.resources import DISTRIBUTION
from pipeline.store.db import shown_url, upgrade
from pipeline.store.models import utcnow
from subscribers.cli import subscribers_app

app = typer.Typer(
    help="Weekly AI Tool Verdicts: build, preview and send the weekly newsletter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(comparisons_app, name="comparisons")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(issue_app, name="issue")
app.add_typer(providers_app, name="providers")
app.add_typer(votes_app, name="votes")
app.add_typer(editor_app, name="editor")
app.add_typer(database_app, name="database")
app.add_typer(config_app, name="config")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(api_token_app, name="api-token")
app.add_typer(audit_app, name="audit")


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"verdicts {metadata.version(DISTRIBUTION)}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command()
def init() -> None:
    """Create the database, or upgrade it to the newest schema."""
    settings = load_settings()
    rev = upgrade(settings.database_url)
    out.print(f"Database ready at schema {rev} ({shown_url(settings.database_url)}).", highlight=False)


@app.command()
def demo() -> None:
    """Sample comparisons and readers, then build and send this week's issue to the outbox."""
    from pipeline.cli.demo import run_demo

    settings = load_settings()
    with progress("Sending") as on_progress:
        result = run_demo(settings, utcnow(), on_progress)
    out.print(result.message)
    if result.summary:
        out.print(result.summary.line())
    emails = sorted(result.folder.glob("*.eml"))
    out.print(Text.assemble("\n", (f"{len(emails)} emails", "bold"), f" in {result.folder.resolve()}/"))
    out.print(f"Open the HTML preview: {result.preview.resolve()}")
    command = "verdicts" if shutil.which("verdicts") else sys.argv[0]
    out.print(f"Or read it as plain text: {command} issue preview {result.issue_id} --text", highlight=False)
    out.print(
        f"Web pages: VERDICTS_BASE_URL=http://127.0.0.1:8000 {command} serve, "
        "then open http://127.0.0.1:8000/subscribe; the sent issue's web version is at /issues, "
        "the editor at /editor (set VERDICTS_EDITOR_PASSWORD too)",
        highlight=False,
    )
    # A new user's first sign-up on the local page otherwise mails a link to the placeholder site.
    out.print(
        f"Links in emails start with VERDICTS_BASE_URL, now {settings.base_url}: "
        "set it before sending and serving to click them locally "
        "(this week's issue is sent already: delete verdicts.db and the outbox folder, then run the demo again)",
        highlight=False,
    )


@app.command("run-weekly")
def run_weekly_cmd(now: NowOption = None) -> None:
    """What the scheduler runs: build this week's issue, then send it when approved."""
    from pipeline.ops.weekly import run_weekly

    settings = load_settings()
    settings.require_real_secret()  # before the housekeeping and the build, not only before the send
    moment = parse_moment(now, "--now") or utcnow()
    with progress("Sending") as on_progress:
        result = run_weekly(settings, moment, on_progress, actor=cli_actor())
    out.print(result.message, highlight=False)
    if result.summary:
        out.print(result.summary.line(), highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Web processes (limits and sessions are in the database).")] = 1,
) -> None:
    """Run the web app: sign-up, confirmation, one-click unsubscribe, preferences."""
    import uvicorn

    from pipeline.logs import logging_config

    settings = ready()
    settings.require_real_secret()
    get_provider(settings).close()  # confirmation emails need it: a missing credential stops us here
    # A factory each worker process calls. Forwarded headers are the app's (VERDICTS_TRUSTED_PROXIES), never
    # uvicorn's: its own would believe anyone on 127.0.0.1, whatever address they claimed.
    uvicorn.run(
        "pipeline.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
        log_config=logging_config(settings.log_format, settings.log_level),
    )


@app.command()
def scheduler() -> None:
    """Run the weekly job on VERDICTS_SCHEDULE until stopped (same as `python scheduler.py`)."""
    from pipeline.ops.schedule import run_forever

    # What would stop the first send stops the start (not a log line at 09:00 on Monday); the database
    # may still be starting, so run_forever waits for it before checking its schema.
    settings = load_settings()
    settings.require_real_secret()
    run_forever(settings)


def exit_code(exc: BaseException) -> int:
    """The exit code of a failure, by its kind: configuration or setup (fix it, then run again), bad data,
    temporary (the same command may succeed later: a database or provider that did not answer), other."""
    from pipeline.delivery.parallel import WorkerDied
    from pipeline.delivery.providers import ProviderConfigError, ProviderUnavailable
    from pipeline.errors import (
        EXIT_BAD_DATA,
        EXIT_CONFIGURATION,
        EXIT_FAILURE,
        EXIT_TEMPORARY,
        ConfigurationError,
        InvalidInput,
        NotFound,
    )
    from pipeline.store.db import DatabaseNotReady, DatabaseUnreachable

    kinds = (  # in this order: an unreachable database is also a DatabaseNotReady
        (EXIT_TEMPORARY, (DatabaseUnreachable, ProviderUnavailable, WorkerDied)),
        (EXIT_CONFIGURATION, (ConfigurationError, DatabaseNotReady, ProviderConfigError)),
        (EXIT_BAD_DATA, (InvalidInput, NotFound)),
    )
    return next((code for code, classes in kinds if isinstance(exc, classes)), EXIT_FAILURE)


def _log_settings() -> tuple[str, str]:
    """Format and level of the log: VERDICTS_LOG_LEVEL when it is set; otherwise warnings only, as a command's
    own output says what it did (the scheduler and `serve` log at INFO). Settings that do not load leave the
    defaults: the command then says what is wrong with them."""
    from pydantic import ValidationError

    from pipeline.config import get_settings

    try:
        settings = get_settings()
    except ValidationError:
        return "text", "WARNING"
    return settings.log_format, settings.log_level if "log_level" in settings.model_fields_set else "WARNING"


def main() -> None:
    from pipeline.errors import EXIT_INTERRUPTED
    from pipeline.logs import setup_logging

    log_format, level = _log_settings()
    setup_logging(log_format, level)
    try:
        app()
    except VerdictsError as exc:
        code = exit_code(exc)
        if log_format == "json":  # a service's log stays one JSON object a line, its last words included
            logging.getLogger("verdicts").error("error: %s", exc, extra={"exit_code": code})
        else:
            err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(code)
    except KeyboardInterrupt:  # a second Ctrl-C: the send's rows in flight say so (`issue show`)
        err.print("stopped at once (Ctrl-C)", highlight=False)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
