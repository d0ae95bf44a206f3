"""A disk budget for everything the runtime records: the oldest files go first."""

import shutil
import threading
from pathlib import Path

from ..errors import log

SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "M": 1000**2,
    "MB": 1000**2,
    "G": 1000**3,
    "GB": 1000**3,
    "T": 1000**4,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}


def parse_size(text: str | int) -> int:
    """``"500MB"``, ``"2GiB"``, ``"1.5G"`` or a number of bytes → bytes; ValueError names the text."""
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        raw = str(text).strip().upper().replace(" ", "")
        digits = raw.rstrip("KMGTIB")
        value, unit = (float(digits) if digits else -1.0), raw[len(digits) :]
    if unit not in SIZE_UNITS or value <= 0:
        raise ValueError(f"{text!r} is not a size; write e.g. 500MB, 2GiB or 1000000")
    return int(value * SIZE_UNITS[unit])


def free_bytes(folder: Path) -> int:
    """Free space where ``folder`` (or its nearest existing parent) lives."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    return shutil.disk_usage(existing).free


class DiskBudget:
    """Files matching the registered (folder, glob) pairs share ``max_bytes``; ``enforce`` deletes
    the oldest (by name, which starts with the UTC time, then by modification time) until they fit."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"a disk budget must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._patterns: set[tuple[Path, str]] = set()
        self._lock = threading.Lock()
        self.deleted = 0

    def register(self, folder: Path, pattern: str) -> None:
        with self._lock:
            self._patterns.add((Path(folder), pattern))

    def files(self) -> list[Path]:
        found = {p for folder, pattern in self._patterns for p in folder.glob(pattern) if p.is_file()}
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))

    def enforce(self) -> list[Path]:
        """Delete the oldest files until the total fits; the deleted paths."""
        with self._lock:
            files = self.files()
            sizes = {p: p.stat().st_size for p in files}
            total, removed = sum(sizes.values()), []
            for path in files:
                if total <= self.max_bytes:
                    break
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                total -= sizes[path]
                removed.append(path)
            self.deleted += len(removed)
        if removed:
            log.info(f"disk budget: deleted {len(removed)} oldest file(s), {_mb(sum(sizes[p] for p in removed))}")
        return removed


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
