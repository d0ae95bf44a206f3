"""Errors meant for the person at the keyboard: cli.py prints them as one line, exit code 2."""


class UserError(Exception):
    """Bad input (missing file, wrong layout, corrupt checkpoint): one clear line, no traceback."""

    user_facing = True
    exit_code = 2
