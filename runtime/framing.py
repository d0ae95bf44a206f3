"""The one place where the runtime API meets the model's input contract and the overlay.

Frame → tensor (``runtime.preprocess.Preprocessor`` built from the model's ``InputContract``), the
sentiment map back onto the frame (``runtime.overlay.map_to_frame``) and drawing
(``runtime.overlay.Overlay``) all go through ``Framing``: nothing else in ``api.py`` /
``pipeline.py`` touches ``Preprocessor``, ``Geometry`` or ``Overlay``.
"""

import numpy as np

from .metadata import ModelMetadata
from .overlay import Overlay, map_to_frame
from .preprocess import Geometry, Preprocessor


class Framing:
    """``to_tensor`` fills one row of an input batch; ``map_on_frame`` and ``draw`` undo its geometry.

    ``resize``: None follows the model's input contract; a geometry name overrides it."""

    def __init__(self, metadata: ModelMetadata, resize: str | None = None) -> None:
        self.class_names = tuple(metadata.class_names)
        self.contract = metadata.contract_for(resize)
        self._pre = Preprocessor(self.contract)

    def new_batch(self, size: int = 1) -> np.ndarray:
        return self._pre.new_buffer(size)

    def to_tensor(self, frame_bgr: np.ndarray, batch: np.ndarray, row: int = 0) -> Geometry:
        """Write the frame into ``batch[row]``; the Geometry says where it went."""
        return self._pre(frame_bgr, batch, row)

    @staticmethod
    def map_on_frame(sentiment_map: np.ndarray, geometry: Geometry, frame_size: tuple[int, int]) -> np.ndarray:
        """The h×w map as a float32 H×W map over the frame, min–max scaled to [0, 1] (as drawn);
        NaN where the model saw nothing (outside a centre crop)."""
        shown = map_to_frame(sentiment_map, geometry)
        fx, fy, fw, fh = geometry.frame_rect
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
