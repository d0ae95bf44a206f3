"""A model replaced while it runs: the new file is loaded in the background, checked, and swapped in
between two batches; a file that fails a check leaves the old model running, with a warning."""

import os
import threading
from pathlib import Path

import numpy as np

from .errors import RuntimeUserError, log
from .model import Model
from .periodic import Periodic

POLL_S = 1.0
SMOKE_FRAME = (48, 64)  # (height, width) of the black frame a new model must answer


def file_signature(path: Path) -> tuple | None:
    """What changes when the file is replaced (an atomic rename gives a new inode) or rewritten."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ModelReloader(Periodic):
    """Watches ``path`` (polling, every ``poll_s``); ``reload_now`` does the same on request
    (``POST /model/reload``). The pipeline swaps the checked model in with ``replace_model``."""

    def __init__(self, pipeline, path: str | Path, open_options: dict, poll_s: float = POLL_S) -> None:
        super().__init__("model-watch", poll_s, self._look)
        self.pipeline, self.path, self.open_options = pipeline, Path(path), dict(open_options)
        self.seen = file_signature(self.path)
        self.reloads = self.refusals = 0
        self._lock = threading.Lock()  # one load at a time
        self._pending: tuple | None = None

    def reload_now(self) -> str | None:
        """Load, check and hand over the file as it is now: None, or why it was refused."""
        with self._lock:
            self.seen = file_signature(self.path)
            try:
                candidate = Model(self.path, **self.open_options)
            except (RuntimeUserError, OSError, ValueError) as exc:
                return self._refuse(str(exc))
            problem = self.pipeline.model.replacement_problem(candidate) or _smoke_problem(candidate)
            if problem:
                candidate.close()
                return self._refuse(problem)
            self.pipeline.replace_model(candidate)
            self.reloads += 1
            log.info(f"{self.path}: new model checked; it takes over from the next batch")
            return None

    def _refuse(self, problem: str) -> str:
        self.refusals += 1
        log.warning(f"{self.path}: the new file was refused ({problem}); the running model carries on")
        return problem

    def _look(self) -> None:
        now = file_signature(self.path)
        if now is None or now == self.seen:
            self._pending = None
        elif now != self._pending:  # changed since the last look: wait until it holds still
            self._pending = now
        else:
            self.reload_now()
            self._pending = None


def _smoke_problem(model: Model) -> str | None:
    try:
        prediction = model.predict(np.zeros((*SMOKE_FRAME, 3), np.uint8))
    except Exception as exc:  # any failure of the new file is a refusal, never a crash
        return f"a test inference failed ({exc})"
    if not np.all(np.isfinite(prediction.probs)) or not np.all(np.isfinite(prediction.raw_map)):
        return "a test inference gave non-finite scores"
    return None
