"""What this OpenCV build can write, and the file-system steps every writer shares (standard library
and OpenCV only, so the validation of command-line paths can use it before anything runs)."""

import functools
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import RuntimeUserError

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


@functools.cache
def writable_video_suffixes() -> tuple[str, ...]:
    """The containers of ``FOURCC`` this OpenCV build can write: one 16×16 frame each, read back."""
    found = []
    with tempfile.TemporaryDirectory(prefix="wscnet-video-probe-") as folder:
        for suffix, code in FOURCC.items():
            probe = Path(folder) / f"probe{suffix}"
            writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*code), 10.0, (16, 16))
            if writer.isOpened():
                writer.write(np.zeros((16, 16, 3), np.uint8))
                writer.release()
                if playable(probe):
                    found.append(suffix)
    return tuple(found)


def playable(path: str | Path) -> bool:
    """OpenCV opens the video and decodes its first frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


def temp_beside(path: Path, suffix: str) -> Path:
    """A new empty hidden ``.part`` file in ``path``'s folder (created if needed), readable as a
    normal file would be (``mkstemp``'s 0600 would make the finished file private)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{suffix}", dir=path.parent)
    except OSError as exc:
        raise RuntimeUserError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)
