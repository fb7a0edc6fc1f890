"""How library log records reach the user of the command: one line each on stderr.

Library code logs to the "pixgrep.*" loggers and never prints; the command shows warnings always
and information lines (downloading a model, the summary after an index run) only when stderr is a
terminal, as `pixgrep: warning: ...` / `pixgrep: ...`.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LOGGER = "pixgrep"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests swap it), not the one at set-up."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"pixgrep: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"pixgrep: warning: {message}"
        return f"pixgrep: {message}"


def configure_logging(*, verbose: bool | None = None) -> logging.Handler:
    """Install (once) the stderr handler on the "pixgrep" logger; information lines show when
    `verbose`, which defaults to whether stderr is a terminal. Returns the handler."""
    logger = logging.getLogger(LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, _CurrentStderr)), None)
    if handler is None:
        handler = _CurrentStderr()
        handler.setFormatter(_OneLine())
        logger.addHandler(handler)
    show_info = sys.stderr.isatty() if verbose is None else verbose
    logger.setLevel(logging.INFO if show_info else logging.WARNING)
    return handler


def remove_logging(handler: logging.Handler) -> None:
    logger = logging.getLogger(LOGGER)
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
