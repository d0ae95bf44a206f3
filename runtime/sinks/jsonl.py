"""Records as JSON Lines, written at the file's final path so ``tail -f`` follows a live run.

Every record is one complete line, flushed as it is written; a crash (a power cut, ``kill -9``)
leaves at most one partial last line, which ``read_records`` skips. A full disk loses records, not
the file: the partial line is cut off again, one warning is logged, and writing resumes when space
returns. ``-`` writes to standard output.
"""

import json
import sys
import threading
from pathlib import Path
from typing import IO

from ..errors import RuntimeUserError, log
from ..events import Event
from .base import Sink

STDOUT = "-"


class JsonlSink(Sink):
    """Frame records (``Prediction.to_dict()``) and events (``Event.to_dict()``), one per line."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = STDOUT if str(path) == STDOUT else Path(path)
        self._file = sys.stdout if self.path == STDOUT else _open_for_writing(self.path)
        self._lock = threading.Lock()
        self.records = 0
        self.dropped = 0
        self._failing = False

    def write(self, frame, prediction) -> None:
        self.write_record(prediction.to_dict())

    def event(self, event: Event) -> None:
        self.write_record(event.to_dict())

    def write_record(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                return
            start = self._file.tell() if self._file is not sys.stdout else 0
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                self._lost_record(start, exc)
                return
            self.records += 1
            if self._failing:
                self._failing = False
                log.info(f"{self.path}: writing records again ({self.dropped} lost while it could not)")

    def _lost_record(self, start: int, exc: OSError) -> None:
        self.dropped += 1
        try:  # the half-written line goes, so the next record starts on a line of its own
            self._file.truncate(start)
            self._file.seek(start)
        except (OSError, ValueError):
            pass
        if not self._failing:
            self._failing = True
            log.warning(f"{self.path}: cannot write records ({exc.strerror or exc}); dropping them until it can")

    def counters(self) -> dict[str, int]:
        return {"records": self.records, "records_dropped": self.dropped}

    def close(self) -> None:
        with self._lock:
            if self._file is None or self._file is sys.stdout:
                self._file = None
                return
            try:
                self._file.close()
            except OSError as exc:
                log.warning(f"{self.path}: could not finish the file ({exc.strerror or exc})")
            self._file = None


def _open_for_writing(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise RuntimeUserError(f"{path}: cannot write here ({exc.strerror or exc})") from None


def read_records(path: str | Path, kind: str = "all") -> list[dict]:
    """The records of a JSONL file; a partial last line (a crash mid-write) is skipped.
    ``kind``: ``all``, ``frames`` (records with an ``index``) or ``events`` (with an ``event``)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind == "all" or (kind == "events") == ("event" in record):
            records.append(record)
    return records
