"""One logging setup for every process: the CLI, the scheduler and the web app, uvicorn's loggers included.

``VERDICTS_LOG_FORMAT=json`` writes one JSON object a line (time, level, logger, message, and the ids a call
passes with ``extra=``: ``issue_id``, ``delivery_ids``, …) for a log collector; ``text`` is for people.
The links readers click carry signed tokens (unsubscribe, preferences, votes) that act for them: the web
app's access lines show such a path segment masked, as they would a password.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: A line per HTTP request to the provider, per job run, per migration step at INFO: their warnings still show.
CHATTY = ("httpx", "httpcore", "apscheduler", "alembic")
#: A path segment shaped like one of our signed tokens (``<id>.<signature>``, itsdangerous' ``a.b.c``).
_TOKEN = re.compile(r"(?<=/)[\w-]+\.[\w.-]{16,}")
MASK = "***"


def mask_tokens(path: str) -> str:
    """``/unsubscribe/12.9b6c…`` → ``/unsubscribe/***``: whoever reads the log cannot act for the reader."""
    return _TOKEN.sub(MASK, path)


class StderrHandler(logging.StreamHandler[Any]):
    """Writes to ``sys.stderr`` as it is at each line, not as it was when logging was set up (a test, or
    a command run in-process, may have replaced it since)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class AccessFields(logging.Filter):
    """uvicorn's access line with its token masked, and its parts as fields of their own for JSON; uvicorn's
    copy of each message with terminal colours is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            path = mask_tokens(str(path))
            record.args = (client, method, path, version, status)
            record.client, record.method, record.path, record.status = client, method, path, status
        return True


class VerdictsJsonFormatter(JsonFormatter):
    """``{"time": …, "level": …, "logger": …, "message": …, <extra fields>}``; the time in UTC, first."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}", style="{", rename_fields={"levelname": "level", "name": "logger"}
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)


def logging_config(log_format: str = "text", level: str = "INFO") -> dict[str, Any]:
    """The configuration for ``logging.config.dictConfig``; uvicorn takes it as ``log_config``, so each web
    worker process sets itself up the same way."""
    chatty = level if level == "DEBUG" else max(level, "WARNING", key=logging.getLevelName)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"access": {"()": AccessFields}},
        "formatters": {"text": {"format": TEXT_FORMAT}, "json": {"()": VerdictsJsonFormatter}},
        "handlers": {"stderr": {"()": StderrHandler, "formatter": log_format, "filters": ["access"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            **{name: {"level": chatty} for name in CHATTY},
            # uvicorn's own handlers go: its lines reach ours, in the same format.
            **{
                name: {"level": level, "handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
        },
    }


def setup_logging(log_format: str = "text", level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(log_format, level))
