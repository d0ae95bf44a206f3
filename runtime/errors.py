"""Errors meant for the person at the keyboard, the runtime's logger, and the exit codes a supervisor reads.

``cli.py`` prints a ``user_facing`` error as one line ``error: …`` and exits with its ``exit_code``.
"""

import logging

log = logging.getLogger("runtime")

EXIT_OK = 0  # finished: the files ended, or SIGINT / SIGTERM stopped the run with its files complete
EXIT_BUG = 1  # an unexpected error: a traceback
EXIT_BAD_INPUT = 2  # refused before any work: a bad path, option, model or config key
EXIT_CHECK_FAILED = 3  # a finished check failed (parity, a benchmark row, doctor)
EXIT_SOURCES_LOST = 4  # a live run ended because its sources were gone for good (--reconnect N used up)
EXIT_FAULT = 5  # a live run stopped by a fault it could not survive


class RuntimeUserError(Exception):
    """Bad source, unreadable model, missing back-end: one clear line, no traceback."""

    user_facing = True
    exit_code = EXIT_BAD_INPUT


class RunFault(RuntimeUserError):
    """A running pipeline met a fault it cannot survive: one line, exit code 5."""

    exit_code = EXIT_FAULT


class SourcesLost(RuntimeUserError):
    """Every live source is gone for good after its reconnection attempts: one line, exit code 4."""

    exit_code = EXIT_SOURCES_LOST


class SourceUnavailable(Exception):
    """A live source cannot deliver frames right now (camera unplugged, stream down): worth retrying."""
