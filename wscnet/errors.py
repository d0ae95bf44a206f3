"""Errors meant for the person at the keyboard: cli.py prints them as one line ``error: …`` and
exits with their ``exit_code`` (README, "Exit codes")."""

EXIT_BAD_INPUT = 2
EXIT_CHECK_FAILED = 3


class UserError(Exception):
    """Bad input (missing file, wrong layout, corrupt checkpoint): one clear line, no traceback."""

    user_facing = True
    exit_code = EXIT_BAD_INPUT


class CheckFailed(Exception):
    """The work is done and written, but a check of it failed (parity below its targets, a
    benchmark row that failed validation): scripts and CI must not read it as a success."""

    user_facing = True
    exit_code = EXIT_CHECK_FAILED
