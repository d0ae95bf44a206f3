"""The one place where the runtime API meets the model's input geometry and the overlay.

Frame → tensor (``runtime.preprocess``), the sentiment map back onto the frame, and drawing
(``runtime.overlay``) all go through ``Framing``: nothing else in ``api.py`` / ``pipeline.py``
touches ``Preprocessor``, ``Geometry`` or ``Overlay``, so when the input contract read from the
model's metadata replaces today's (input_size, mean, std, resize mode), this file is what changes.
"""

import cv2
import numpy as np

from .metadata import ModelMetadata
from .overlay import Overlay
from .preprocess import RESIZE_MODES, Geometry, Preprocessor

DEFAULT_RESIZE = "letterbox"


class Framing:
    """``to_tensor`` fills one row of an input batch; ``map_on_frame`` and ``draw`` undo its geometry."""

    def __init__(self, metadata: ModelMetadata, resize: str | None = None) -> None:
        resize = resize or DEFAULT_RESIZE
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.class_names = tuple(metadata.class_names)
        self.resize = resize
        self._pre = Preprocessor(metadata.input_size, metadata.mean, metadata.std, resize)

    def new_batch(self, size: int = 1) -> np.ndarray:
        return self._pre.new_buffer(size)

    def to_tensor(self, frame_bgr: np.ndarray, batch: np.ndarray, row: int = 0) -> Geometry:
        """Write the frame into ``batch[row]``; the Geometry says where it went."""
        return self._pre(frame_bgr, batch, row)

    @staticmethod
    def map_on_frame(sentiment_map: np.ndarray, geometry: Geometry, frame_size: tuple[int, int]) -> np.ndarray:
        """The h×w map as a float32 H×W map over the frame; NaN where the model saw nothing (crop)."""
        s = geometry.input_size
        cx, cy, cw, ch = geometry.content
        fx, fy, fw, fh = geometry.frame_rect
        full = cv2.resize(sentiment_map.astype(np.float32, copy=False), (s, s), interpolation=cv2.INTER_LINEAR)
        shown = cv2.resize(full[cy : cy + ch, cx : cx + cw], (fw, fh), interpolation=cv2.INTER_LINEAR)
        width, height = frame_size
        if (fx, fy, fw, fh) == (0, 0, width, height):
            return shown
        on_frame = np.full((height, width), np.nan, dtype=np.float32)
        on_frame[fy : fy + fh, fx : fx + fw] = shown
        return on_frame

    def draw(self, frame: np.ndarray, probs: np.ndarray, sentiment_map: np.ndarray | None, geometry: Geometry,
             alpha: float = 0.45, readout: str = "") -> np.ndarray:
        """The overlay, in place: map (unless None or alpha 0), top-3 bars, readout."""
        alpha = min(max(float(alpha), 0.0), 1.0)
        return Overlay(self.class_names, alpha).draw(frame, probs, sentiment_map, geometry, readout)
