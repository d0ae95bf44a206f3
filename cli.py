"""wscnet-edge command line: python cli.py --help.

Only wiring: each area registers its own commands (``register(app)`` in its ``commands.py``);
their heavy imports (torch, onnx) happen inside the command bodies, so `python cli.py webcam`
never loads torch. Bad input (a ``user_facing`` error) is one ``error:`` line and its exit code.
"""

import logging
import sys

import typer

from benchmarks.commands import register as register_bench
from export.commands import register as register_export
from jobs.commands import register as register_jobs
from runtime.commands import register as register_runtime
from jobs.doctor import register as register_doctor
from studies.commands import register as register_studies
from wscnet.commands import register as register_core

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="WSCNet visual sentiment: train, export, run on video, benchmark.",
)
for register in (register_core, register_export, register_runtime, register_doctor, register_bench, register_studies,
                 register_jobs):
    register(app)


class _UserFormat(logging.Formatter):
    PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.DEBUG: "debug: "}

    def format(self, record: logging.LogRecord) -> str:
        return self.PREFIX.get(record.levelno, "") + record.getMessage()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure_logging() -> None:
    handler = _StderrHandler()
    handler.setFormatter(_UserFormat())
    for name in ("runtime", "export", "wscnet", "benchmarks"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main() -> None:
    _configure_logging()
    try:
        app()
    except Exception as exc:  # user-facing errors are one line; anything else is a bug: traceback
        if getattr(exc, "user_facing", False):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 2))
        raise


if __name__ == "__main__":
    main()
