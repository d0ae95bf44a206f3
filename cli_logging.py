"""How the CLI shows the project's log messages on stderr, one line each: ``warning: …``,
``error: …``, INFO as the bare message, ``debug: …``. Torch-free: cli.py imports it first."""

import logging
import sys
from typing import TextIO

PACKAGES = ("wscnet", "export", "runtime", "benchmarks")  # each logs to logging.getLogger(name)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class CliFormatter(logging.Formatter):
    """A record as the line a user reads: its level as a lower-case prefix, except INFO."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.ERROR:
            return "error: " + message
        if record.levelno >= logging.WARNING:
            return "warning: " + message
        if record.levelno >= logging.INFO:
            return message
        return "debug: " + message


def setup_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Show the project's messages at ``level`` and up on ``stream`` (stderr). Other libraries'
    loggers keep Python's default: warnings and errors only. Calling it again changes the level."""
    root = logging.getLogger()
    present = [h for h in root.handlers if isinstance(h.formatter, CliFormatter)]
    if stream is not None or not present:  # one CLI handler: a new stream replaces it
        for old in present:
            root.removeHandler(old)
        handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
        handler.setFormatter(CliFormatter())
        root.addHandler(handler)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level)
