"""The one place that configures structlog: readable lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# The password of a URL's user information (`scheme://user:password@host`), in any text.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)[^/\s@]*@")


def without_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


def redact_url_passwords(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """A processor: no password of a URL (a Pushgateway's, a database's) reaches a log line."""
    return {k: without_url_passwords(v) if isinstance(v, str) else v for k, v in event.items()}


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Sends log events to `stream` (stderr by default), leaving stdout to results."""
    stream = stream or sys.stderr
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if stream.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            redact_url_passwords,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
