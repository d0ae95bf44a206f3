"""wscnet-edge command line: python cli.py --help.

Only wiring: each area registers its own commands (``register(app)`` in its ``commands.py``);
their heavy imports (torch, onnx) happen inside the command bodies, so `python cli.py webcam`
never loads torch. Bad input (a ``user_facing`` error) is one ``error:`` line and its exit code.
Messages come from the packages' loggers (cli_logging.py shows them); --quiet and --verbose,
given before the command, set how many.
"""

import logging
import sys

import typer

from benchmarks.commands import register as register_bench
from cli_logging import setup_logging
from export.commands import register as register_export
from jobs.commands import register as register_jobs
from jobs.doctor import register as register_doctor
from runtime.commands import register as register_runtime
from studies.commands import register as register_studies
from wscnet.commands import register as register_core

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="WSCNet visual sentiment: train, export, run on video, benchmark.",
)
for register in (
    register_core,
    register_export,
    register_runtime,
    register_doctor,
    register_bench,
    register_studies,
    register_jobs,
):
    register(app)
log = logging.getLogger("cli")


@app.callback()
def options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also debug messages."),
) -> None:
    """WSCNet visual sentiment: train, export, run on video, benchmark."""
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other: pass one")
    setup_logging(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def main() -> None:
    setup_logging()
    try:
        app()
    except Exception as exc:  # user-facing errors are one line; anything else is a bug: traceback
        if getattr(exc, "user_facing", False):
            log.error("%s", exc)
            sys.exit(getattr(exc, "exit_code", 2))
        raise


if __name__ == "__main__":
    main()
