"""--realtime: hand a file's frames out no faster than their own timestamps, so a video plays at its
frame rate (for watching it live) instead of as fast as the machine can decode."""

import time
from typing import Iterator

from .sources import Frame


def paced(frames: Iterator[Frame]) -> Iterator[Frame]:
    start = None
    for frame in frames:
        now = time.perf_counter()
        if start is None:
            start = now - frame.timestamp
        delay = start + frame.timestamp - now
        if delay > 0:
            time.sleep(delay)
            frame.captured = time.perf_counter()  # end-to-end latency starts when the frame is due
        yield frame
