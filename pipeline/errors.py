"""Errors a user can act on; the CLI prints their message on one line and exits non-zero, with a code
that says what kind of failure it was (`pipeline.cli.main.exit_code`, and the README's table)."""


class VerdictsError(Exception):
    """Base class: the message names what is wrong and how to fix it."""


class ConfigurationError(VerdictsError):
    """A setting that is missing, malformed or unsafe: nothing runs until it is fixed."""


class NotFound(VerdictsError):
    """An id or address that does not exist."""


class InvalidInput(VerdictsError):
    """A file, record or value that fails validation; nothing was written."""


class InvalidState(VerdictsError):
    """The operation does not fit the current lifecycle state (e.g. approving a sent issue)."""


class RenderError(VerdictsError):
    """The issue cannot be rendered safely (template error, lint refusal, preflight failure)."""


#: Exit codes by kind of failure, for scripts and service managers (the README's "Exit codes"). 2 is
#: Typer's own, for a command used wrongly (an unknown option, a missing argument).
EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIGURATION, EXIT_BAD_DATA, EXIT_TEMPORARY, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130
