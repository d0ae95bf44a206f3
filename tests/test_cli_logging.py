"""What the CLI shows of the packages' log messages: one line per message with its level as the
prefix users already know, and --quiet / --verbose before any command."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_logging import CliFormatter, setup_logging

REPO = Path(__file__).resolve().parent.parent


def record(level: int, message: str, *args) -> logging.LogRecord:
    return logging.LogRecord("wscnet", level, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    "level, expected",
    [
        (logging.DEBUG, "debug: 3 batches in the queue"),
        (logging.INFO, "3 batches in the queue"),
        (logging.WARNING, "warning: 3 batches in the queue"),
        (logging.ERROR, "error: 3 batches in the queue"),
        (logging.CRITICAL, "error: 3 batches in the queue"),
    ],
)
def test_each_level_is_one_line_with_its_prefix(level, expected):
    assert CliFormatter().format(record(level, "%d batches in the %s", 3, "queue")) == expected


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    handlers, levels = list(root.handlers), {n: logging.getLogger(n).level for n in ("wscnet", "export", "other")}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_setup_shows_the_project_at_its_level_and_other_libraries_from_warning(restored_logging):
    stream = io.StringIO()
    setup_logging(logging.INFO, stream)
    setup_logging(logging.INFO, stream)  # a second call adds no second handler
    logging.getLogger("wscnet").info("epoch 1")
    logging.getLogger("export").debug("hidden at INFO")
    logging.getLogger("other").info("another library's note")
    logging.getLogger("other").warning("another library's warning")
    setup_logging(logging.WARNING)
    logging.getLogger("export").info("hidden with --quiet")
    logging.getLogger("export").warning("calibrated range missing")
    assert stream.getvalue().splitlines() == [
        "epoch 1",
        "warning: another library's warning",
        "warning: calibrated range missing",
    ]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def test_quiet_hides_an_info_line_and_verbose_keeps_it(tmp_path):
    out = tmp_path / "set"
    assert cli("synth", out, "--n-per-class", 2, "--size", 32).returncode == 0
    note = f"{out} already holds this synthetic set (12 images); nothing written"
    plain, quiet, verbose = (
        cli(*flag, "synth", out, "--n-per-class", 2, "--size", 32) for flag in ([], ["--quiet"], ["--verbose"])
    )
    assert [p.returncode for p in (plain, quiet, verbose)] == [0, 0, 0]
    assert plain.stderr.splitlines() == [note] and verbose.stderr.splitlines() == [note]
    assert quiet.stderr == "" and quiet.stdout == plain.stdout == ""


def test_errors_still_show_under_quiet(tmp_path):
    proc = cli("--quiet", "synth", tmp_path / "set", "--n-per-class", 1)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: synth needs --n-per-class >= 2, --size >= 32 and 0 < --test-fraction < 1"
    ]
