"""Errors meant for the person at the keyboard: cli.py prints them as one line, exit code 2."""


class RuntimeUserError(Exception):
    """Bad source, unreadable model, missing back-end: one clear line, no traceback."""

    user_facing = True
    exit_code = 2
