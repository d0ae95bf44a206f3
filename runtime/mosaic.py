"""The newest overlaid frame of every stream in one picture, for the window (or a served page)."""

import math
import threading

import cv2
import numpy as np

MAX_WIDTH = 1280  # several streams share one picture about this wide


class Mosaic:
    """A grid of ``count`` tiles; ``put(i, frame)`` fits frame i into tile i (aspect kept, bars black).

    One stream is shown as it is. ``version`` grows with every ``put``, so a reader can tell
    whether ``image()`` changed.
    """

    def __init__(self, sizes: list[tuple[int, int]], max_width: int = MAX_WIDTH) -> None:
        if not sizes:
            raise ValueError("a mosaic needs at least one stream")
        self.count = len(sizes)
        self.cols = math.ceil(math.sqrt(self.count))
        self.rows = math.ceil(self.count / self.cols)
        widest = max(w for w, _ in sizes)
        tallest_ratio = max(h / w for w, h in sizes)
        if self.count == 1:
            self.tile = sizes[0]
        else:
            tile_w = min(widest, max_width // self.cols)
            self.tile = (tile_w, max(1, round(tile_w * tallest_ratio)))
        self.canvas = np.zeros((self.rows * self.tile[1], self.cols * self.tile[0], 3), np.uint8)
        self.version = 0
        self._lock = threading.Lock()

    def put(self, index: int, frame: np.ndarray) -> None:
        tw, th = self.tile
        h, w = frame.shape[:2]
        scale = min(tw / w, th / h)
        fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
        fitted = frame if (fw, fh) == (w, h) else cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
        x0 = (index % self.cols) * tw + (tw - fw) // 2
        y0 = (index // self.cols) * th + (th - fh) // 2
        with self._lock:
            self.canvas[y0 : y0 + fh, x0 : x0 + fw] = fitted
            self.version += 1

    def image(self) -> np.ndarray:
        with self._lock:
            return self.canvas.copy()
