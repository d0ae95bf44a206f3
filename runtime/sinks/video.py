"""Overlaid frames to video files that stay playable whatever happens to the box.

A file is written beside its final name (a hidden ``.part``) and moved into place only once it is
closed and OpenCV can play it back, so a finished name never holds a broken video. With
``segment_s`` the recording is cut into files of that many seconds of video, named
``<stem>-<UTC start><suffix>``: a power cut loses at most the open segment. A disk budget deletes
the oldest segments first. When the disk runs low, recording pauses (one warning) while the rest
of the pipeline goes on, and resumes in a new file when space returns.
"""

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from ..errors import RuntimeUserError, log
from ..videoio import FOURCC, playable, temp_beside
from .base import Sink
from .disk import DiskBudget, free_bytes

MIN_FREE_BYTES = 64 * 1024 * 1024  # pause recording below this much free space
SPACE_CHECK_S = 1.0


class VideoRecorder(Sink):
    """``path``: the video (its suffix picks the container); ``fps`` (a number, or a function that
    gives it once the source is up) and ``size`` (width, height; None: the first frame's) of the
    source. ``segment_s``: seconds of video per file (None: one file)."""

    name = "video"

    def __init__(
        self,
        path: str | Path,
        fps,
        size: tuple[int, int] | None,
        segment_s: float | None = None,
        budget: DiskBudget | None = None,
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in FOURCC:
            raise RuntimeUserError(
                f"{self.path}: unsupported video type {self.suffix or '(none)'}; use one of {', '.join(FOURCC)}"
            )
        if segment_s is not None and segment_s <= 0:
            raise RuntimeUserError(f"--segment must be a positive number of seconds, got {segment_s}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self._fps, self.segment_s, self.frames_per_file = fps, segment_s, None
        self.budget, self.min_free_bytes = budget, int(min_free_bytes)
        if budget is not None:
            budget.register(self.path.parent, f"{self.path.stem}-*{self.suffix}")
        self.finished: list[Path] = []  # files closed, checked and in place
        self.lost = 0  # files that could not be finished (disk full at the end)
        self.paused_frames = 0
        self._writer, self._part, self._target, self._in_file = None, None, None, 0
        self._paused, self._next_space_check, self._started = False, 0.0, False
        if self.size is not None:
            self._open(first=True)

    # ---- Sink ----------------------------------------------------------------------------------
    def write(self, frame: np.ndarray, prediction=None) -> None:
        if not self._space_ok():
            self.paused_frames += 1
            return
        if self.size is None:
            self.size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._open(first=not self._started)
        if (frame.shape[1], frame.shape[0]) != self.size:  # a folder of images of mixed sizes
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self._in_file += 1
        if self.frames_per_file and self._in_file >= self.frames_per_file:
            self._finish()

    def counters(self) -> dict[str, int]:
        return {
            "video_files": len(self.finished),
            "video_files_lost": self.lost,
            "video_frames_paused": self.paused_frames,
        }

    def close(self) -> None:
        self._finish()

    def discard(self) -> None:
        """Drop the open file without touching anything already in place."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._part.unlink(missing_ok=True)

    # ---- files -----------------------------------------------------------------------------------
    def _open(self, first: bool) -> None:
        self._started = True
        self.fps = float(self._fps() if callable(self._fps) else self._fps)
        if self.segment_s is not None:
            self.frames_per_file = max(1, round(self.segment_s * self.fps))
        segmented = self.segment_s is not None
        self._target = self._segment_name() if (segmented or not first) else self.path
        self._part = temp_beside(self._target, self.suffix)  # OpenCV picks the container from the suffix
        self._writer = cv2.VideoWriter(
            str(self._part), cv2.VideoWriter_fourcc(*FOURCC[self.suffix]), self.fps, self.size
        )
        self._in_file = 0
        if not self._writer.isOpened():
            self._writer = None
            self._part.unlink(missing_ok=True)
            raise RuntimeUserError(f"{self.path}: OpenCV cannot write {self.suffix} video here")

    def _finish(self) -> None:
        """Close the open file; move it into place if it plays, else delete it (never a broken name)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self._in_file and playable(self._part):
            os.replace(self._part, self._target)
            self.finished.append(self._target)
            if self.budget is not None:
                self.budget.enforce()
            return
        self._part.unlink(missing_ok=True)
        if self._in_file:
            self.lost += 1
            log.warning(f"{self._target}: could not be finished (disk full?); the file was dropped")

    def _segment_name(self) -> Path:
        now = datetime.now(timezone.utc)
        stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
        return self.path.with_name(f"{self.path.stem}-{stamp}{self.suffix}")

    def _space_ok(self) -> bool:
        """Checked once a second: below ``min_free_bytes`` recording pauses, at twice that it resumes."""
        now = time.monotonic()
        if now < self._next_space_check:
            return not self._paused
        self._next_space_check = now + SPACE_CHECK_S
        free = free_bytes(self.path.parent)
        if not self._paused and free < self.min_free_bytes:
            self._paused = True
            self._finish()
            log.warning(
                f"{self.path}: disk nearly full ({free / 1e6:.0f} MB free); recording paused, "
                "inference and the other outputs go on"
            )
        elif self._paused and free >= 2 * self.min_free_bytes:
            self._paused = False
            log.info(f"{self.path}: disk space is back ({free / 1e6:.0f} MB free); recording resumes")
        return not self._paused
