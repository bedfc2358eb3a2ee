"""Errors a user can act on; the CLI prints their message on one line and exits non-zero."""


class VerdictsError(Exception):
    """Base class: the message names what is wrong and how to fix it."""


class NotFound(VerdictsError):
    """An id or address that does not exist."""


class InvalidInput(VerdictsError):
    """A file, record or value that fails validation; nothing was written."""


class InvalidState(VerdictsError):
    """The operation does not fit the current lifecycle state (e.g. approving a sent issue)."""


class RenderError(VerdictsError):
    """The issue cannot be rendered safely (template error, lint refusal, preflight failure)."""
