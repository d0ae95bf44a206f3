"""The package's logger: its warnings and progress notes go here, not to stdout; cli.py decides
what is shown (``warning: …`` lines, --quiet, --verbose; cli_logging.py)."""

import logging

log = logging.getLogger("export")
