"""Where overlaid frames and per-frame records go: an mp4, a JSONL file, an on-screen window.

Files are written beside their final name and moved into place by ``close()``, so an existing
file is never left half-overwritten, and an interrupted run still ends with a playable video and
a complete JSONL (the pipeline always closes its sinks).
"""

import functools
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import RuntimeUserError

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def _temp_beside(path: Path, suffix: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{suffix}", dir=path.parent)
    except OSError as exc:
        raise RuntimeUserError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the result private
    return Path(tmp)


@functools.cache
def writable_video_suffixes() -> tuple[str, ...]:
    """The containers of ``FOURCC`` this OpenCV build can write: one 16×16 frame each, read back."""
    found = []
    with tempfile.TemporaryDirectory(prefix="wscnet-video-probe-") as folder:
        for suffix, code in FOURCC.items():
            probe = str(Path(folder) / f"probe{suffix}")
            writer = cv2.VideoWriter(probe, cv2.VideoWriter_fourcc(*code), 10.0, (16, 16))
            if writer.isOpened():
                writer.write(np.zeros((16, 16, 3), np.uint8))
                writer.release()
                capture = cv2.VideoCapture(probe)
                if capture.read()[0]:
                    found.append(suffix)
                capture.release()
    return tuple(found)


class _PartFileSink:
    """Writes into a ``.part`` file beside ``path``; ``close`` moves it to ``path`` (complete),
    ``discard`` removes it (``path`` left as it was). Subclasses release their handle in ``_release``."""

    path: Path
    _tmp: Path

    def _release(self) -> bool:
        """Close the open handle; False when there was none (already closed)."""
        raise NotImplementedError

    def close(self) -> None:
        if self._release():
            os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._release()
        self._tmp.unlink(missing_ok=True)


class VideoSink(_PartFileSink):
    """Frames at the source's size and frame rate; the container follows the suffix (.mp4, .avi, …)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise RuntimeUserError(f"{self.path}: unsupported video type {suffix or '(none)'}; "
                                   f"use one of {', '.join(FOURCC)}")
        self.size = (int(size[0]), int(size[1]))  # (width, height)
        self.fps = fps
        self.frames = 0
        self._tmp = _temp_beside(self.path, suffix)  # OpenCV picks the container from the suffix
        self.writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC[suffix]), fps, self.size)
        if not self.writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise RuntimeUserError(f"{self.path}: OpenCV cannot write {suffix} video here")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:  # a folder of images of mixed sizes
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)
        self.frames += 1

    def _release(self) -> bool:
        if self.writer is None:
            return False
        self.writer.release()
        self.writer = None
        return True


class JsonlSink(_PartFileSink):
    """One JSON object per line, flushed as it goes; moved to its name when the run ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tmp = _temp_beside(self.path, ".jsonl")
        self._file = open(self._tmp, "w", encoding="utf-8")
        self.records = 0

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self.records += 1

    def _release(self) -> bool:
        if self._file is None:
            return False
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        return True


def display_available() -> bool:
    """A screen to draw on: on Linux only with X11 or Wayland, and only with a GUI-enabled OpenCV."""
    if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return re.search(r"GUI:\s+NONE", cv2.getBuildInformation()) is None


class WindowSink:
    """An on-screen window; ``closed`` turns true when the user presses q or Esc."""

    def __init__(self, title: str = "wscnet-edge") -> None:
        self.title = title
        self.closed = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            print(f"warning: no on-screen window ({str(exc).strip().splitlines()[-1]}); "
                  "carrying on without one", file=sys.stderr)
            self.closed = True
            self.available = False
            return
        self.available = True

    def write(self, frame: np.ndarray) -> None:
        if self.closed:
            return
        cv2.imshow(self.title, frame)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed = True

    def close(self) -> None:
        if self.available:
            cv2.destroyWindow(self.title)
            self.available = False
